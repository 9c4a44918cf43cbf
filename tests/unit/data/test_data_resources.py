"""Sessions, objects, commits and repositories against a mocked wire (client-only corner cases)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

import tilde.data.sessions
from tilde.core.errors import ConflictError, NotFoundError, SerializationError
from tilde.data import (
    Client,
    Commit,
    CommitResult,
    ListingEntry,
    ObjectMetadata,
    ReadOnlyObjects,
    Repositories,
    Repository,
    Session,
)

ENDPOINT = "http://tilde.test"
ORG = f"{ENDPOINT}/api/v1/organizations/acme"
REPO = f"{ORG}/repositories/data"

REPO_BODY = {
    "id": "r1",
    "organization_id": "o1",
    "name": "data",
    "description": "d",
    "visibility": "private",
    "retention_days": 30,
    "session_max_duration_days": 7,
    "created_by_type": "user",
    "created_by": "u1",
    "created_at": "2026-05-14T10:00:00Z",
}

SID = "5e551011-0000-4000-8000-000000000001"  # session ids are UUIDs


def test_repository_paths_are_validated(client: Client) -> None:
    for bad in ("acme", "acme/", "/data", "acme/data/x", ""):
        with pytest.raises(ValueError, match="org/repo"):
            client.repository(bad)
    repo = client.repository("acme/data")
    assert repr(repo) == "Repository(acme/data)"
    assert (repo.org, repo.name, repo._path) == ("acme", "data", "/organizations/acme/repositories/data")


def test_repository_loads_lazily_once(mock: respx.MockRouter, client: Client) -> None:
    route = mock.get(REPO).mock(return_value=httpx.Response(200, json=REPO_BODY))
    repo = client.repository("acme/data")
    assert not route.called
    assert repo.id == "r1"
    assert repo.retention_days == 30
    assert repo.created_at is not None
    assert route.call_count == 1
    assert repo.refresh() is repo
    assert route.call_count == 2


def test_repository_update_sends_only_given_fields_and_returns_self(
    mock: respx.MockRouter, client: Client
) -> None:
    route = mock.put(REPO).mock(return_value=httpx.Response(200, json={**REPO_BODY, "description": "new"}))
    repo = client.repository("acme/data")
    assert repo.update(description="new") is repo
    assert json.loads(route.calls.last.request.content) == {"description": "new"}
    assert repo.description == "new"


def test_repositories_build_the_clients_repository_class(mock: respx.MockRouter, client: Client) -> None:
    class Rich(Repository):
        pass

    class RichClient(Client):
        repository_class = Rich

    mock.get(f"{ORG}/repositories").mock(
        return_value=httpx.Response(200, json={"results": [REPO_BODY], "pagination": {"has_more": False}})
    )
    create = mock.post(f"{ORG}/repositories").mock(return_value=httpx.Response(201, json=REPO_BODY))
    with RichClient(endpoint_url=ENDPOINT, api_key="k") as rich:
        assert isinstance(rich.repository("acme/data"), Rich)
        repos = Repositories(rich, "acme")
        assert repr(repos) == "Repositories(org='acme')"
        (listed,) = list(repos.list())
        assert isinstance(listed, Rich)
        assert listed.id == "r1"
        assert isinstance(repos.get("data"), Rich)
        created = repos.create("data")
        assert isinstance(created, Rich)
    assert json.loads(create.calls.last.request.content) == {"name": "data", "visibility": "private"}


def test_session_context_manager_rolls_back_unless_committed(mock: respx.MockRouter, client: Client) -> None:
    mock.post(f"{REPO}/sessions").mock(return_value=httpx.Response(201, json={"session_id": SID}))
    rollback = mock.delete(f"{REPO}/sessions/{SID}").mock(return_value=httpx.Response(204))
    commit = mock.post(f"{REPO}/sessions/{SID}").mock(
        return_value=httpx.Response(200, json={"commit_id": "c1"})
    )
    repo = client.repository("acme/data")

    with repo.session() as session:
        assert repr(session) == "Session(id='5e551011-0000-4000-8000-000000000001')"
    assert rollback.call_count == 1  # clean exit without commit

    with pytest.raises(RuntimeError), repo.session():
        raise RuntimeError("boom")
    assert rollback.call_count == 2  # exception, not suppressed

    with repo.session() as session:
        assert session.commit("m", metadata={"k": "v"}) == "c1"
    assert rollback.call_count == 2
    assert json.loads(commit.calls.last.request.content) == {"message": "m", "metadata": {"k": "v"}}

    with repo.session() as session:
        session.rollback()
    assert rollback.call_count == 3  # not rolled back twice


def test_failed_commit_keeps_the_session_open_for_rollback(mock: respx.MockRouter, client: Client) -> None:
    mock.post(f"{REPO}/sessions").mock(return_value=httpx.Response(201, json={"session_id": SID}))
    rollback = mock.delete(f"{REPO}/sessions/{SID}").mock(return_value=httpx.Response(204))
    mock.post(f"{REPO}/sessions/{SID}").mock(return_value=httpx.Response(409, json={"message": "conflict"}))
    with pytest.raises(ConflictError), client.repository("acme/data").session() as session:
        session.commit("m")
    assert rollback.call_count == 1


APPROVAL = {
    "approval_required": True,
    "session_id": SID,
    "message": "approval required",
    "api_url": f"{REPO}/sessions/5e551011-0000-4000-8000-000000000001/approve",
    "web_url": "https://app.tilde.test/acme/data/approve/5e551011-0000-4000-8000-000000000001",
}


def test_blocking_commit_warns_and_polls_until_404(
    mock: respx.MockRouter, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    mock.post(f"{REPO}/sessions/{SID}").mock(return_value=httpx.Response(202, json=APPROVAL))
    poll = mock.head(f"{REPO}/sessions/{SID}/approve").mock(
        side_effect=[httpx.Response(200), httpx.Response(200), httpx.Response(404)]
    )
    sleeps: list[float] = []
    monkeypatch.setattr(tilde.data.sessions.time, "sleep", sleeps.append)
    session = client.repository("acme/data").attach(SID)
    with pytest.warns(
        UserWarning, match="Approval required - review and approve at: https://app.tilde.test/"
    ):
        assert session.commit("m") == ""
    assert poll.call_count == 3
    assert sleeps == [2.0, 2.0, 2.0]
    assert session._committed


def test_non_blocking_commit_and_commit_result(mock: respx.MockRouter, client: Client) -> None:
    mock.post(f"{REPO}/sessions/{SID}").mock(return_value=httpx.Response(202, json=APPROVAL))
    poll = mock.head(f"{REPO}/sessions/{SID}/approve")
    session = client.repository("acme/data").attach(SID)
    with pytest.warns(UserWarning, match="Approval required"):
        assert session.commit("m", block_for_approval=False) is None
    expected = CommitResult(status="approval_required", web_url=APPROVAL["web_url"])
    assert session.commit_result("m") == expected
    assert not poll.called


@pytest.mark.parametrize("answer", [b"<html>", b"[1]", b""])
def test_commit_answer_that_is_not_a_json_object_is_a_serialization_error(
    mock: respx.MockRouter, client: Client, answer: bytes
) -> None:
    mock.post(f"{REPO}/sessions/{SID}").mock(return_value=httpx.Response(200, content=answer))
    session = client.repository("acme/data").attach(SID)
    with pytest.raises(SerializationError, match=rf"POST \S+/sessions/{SID}: expected a JSON object"):
        session.commit("m")
    assert not session._committed


def test_commit_objects_read_that_commit(mock: respx.MockRouter, client: Client) -> None:
    listing = mock.get(f"{REPO}/objects").mock(
        return_value=httpx.Response(
            200, json={"results": [{"path": "a", "type": "object", "entry": {"size": 1}}]}
        )
    )
    head = mock.head(f"{REPO}/object").mock(
        return_value=httpx.Response(200, headers={"ETag": '"e"', "Content-Length": "1"})
    )
    objects = Commit(client, "acme", "data", id="c1").objects
    assert isinstance(objects, ReadOnlyObjects)
    assert not hasattr(objects, "put")
    (entry,) = list(objects.list(prefix="a", delimiter="/"))
    assert entry.path == "a"
    params = listing.calls.last.request.url.params
    assert (params["ref"], params["prefix"], params["delimiter"], params["amount"]) == ("c1", "a", "/", "100")
    assert "session_id" not in params
    assert objects.head("a") == ObjectMetadata(etag='"e"', content_length=1)
    assert head.calls.last.request.url.params["ref"] == "c1"


def test_reader_is_lazy_ranged_cached_and_follows_redirects(mock: respx.MockRouter, client: Client) -> None:
    mock.get(f"{REPO}/object").mock(
        return_value=httpx.Response(307, headers={"Location": "http://blobs.test/b1"})
    )
    blob = mock.get("http://blobs.test/b1").mock(
        return_value=httpx.Response(
            206,
            content=b"ell",
            headers={"Content-Range": "bytes 1-3/11", "ETag": '"x"', "X-Tilde-Reproducible": "false"},
        )
    )
    reader = client.repository("acme/data").attach(SID).objects.get("p", byte_range=(1, 3))
    assert not blob.called
    assert reader.etag is None
    with reader as open_reader:
        assert open_reader.read() == b"ell"
        assert open_reader.read() == b"ell"
    assert blob.call_count == 1  # cached
    assert blob.calls.last.request.headers["Range"] == "bytes=1-3"
    assert (reader.content_range, reader.content_length, reader.etag) == ("bytes 1-3/11", 3, '"x"')
    assert reader.reproducible is False


def test_uncached_reader_streams_to_the_end_once(mock: respx.MockRouter, client: Client) -> None:
    # A 200 answering a ranged request is the whole object: the reader skips to the range itself.
    route = mock.get(f"{REPO}/object").mock(return_value=httpx.Response(200, content=b"0123456789"))
    reader = client.repository("acme/data").attach(SID).objects.get("p", cache=False, byte_range=(2, None))
    assert list(reader.iter_bytes(3)) == [b"234", b"567", b"89"]
    assert reader.read() == b""
    assert route.call_count == 1
    assert route.calls.last.request.headers["Range"] == "bytes=2-"
    reader.close()
    reader.close()


def test_missing_object_raises_not_found(mock: respx.MockRouter, client: Client) -> None:
    mock.get(f"{REPO}/object").mock(return_value=httpx.Response(404, json={"message": "no such object"}))
    with pytest.raises(NotFoundError), client.repository("acme/data").attach(SID).objects.get("p") as reader:
        reader.read()


def test_invalid_byte_range_is_rejected(client: Client) -> None:
    with pytest.raises(ValueError, match="byte range"):
        client.repository("acme/data").attach(SID).objects.get("p", byte_range=(5, 2))


def test_delete_many_batches_by_1000(mock: respx.MockRouter, client: Client) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"deleted": len(json.loads(request.content)["paths"])})

    route = mock.post(f"{REPO}/objects/delete").mock(side_effect=answer)
    paths = [f"p{i}" for i in range(2500)]
    assert client.repository("acme/data").attach(SID).objects.delete_many(paths) == 2500
    assert [len(json.loads(call.request.content)["paths"]) for call in route.calls] == [1000, 1000, 500]


COMMIT_BODY: dict[str, Any] = {
    "id": "c2",
    "committer": "alice",
    "committer_type": "user",
    "committer_id": "u1",
    "message": "second",
    "creation_date": "2026-05-14T10:00:00.123456789Z",
    "parents": ["c1"],
    "metadata": {"k": "v"},
    "is_stale": False,
}


def test_commits_list_get_diff_and_revert(mock: respx.MockRouter, client: Client) -> None:
    log = mock.get(f"{REPO}/log").mock(
        return_value=httpx.Response(200, json={"results": [COMMIT_BODY], "pagination": {"has_more": False}})
    )
    mock.get(f"{REPO}/commits/c2").mock(return_value=httpx.Response(200, json=COMMIT_BODY))
    diff = mock.get(f"{REPO}/diff").mock(
        return_value=httpx.Response(
            200, json={"results": [{"path": "a", "type": "object", "status": "added"}]}
        )
    )
    revert = mock.post(f"{REPO}/commits/c2/revert").mock(
        return_value=httpx.Response(201, json={"commit_id": "c3"})
    )
    commits = client.repository("acme/data").commits
    assert repr(commits) == "Commits(acme/data)"
    (first,) = list(commits.list(ref="c2", amount=5, page_size=7))
    assert log.calls.last.request.url.params["ref"] == "c2"
    assert log.calls.last.request.url.params["amount"] == "5"  # page_size 7, cut to the cap of 5
    assert (first.id, first.message, first.parents, first.metadata) == ("c2", "second", ["c1"], {"k": "v"})
    assert first.creation_date is not None
    assert first.creation_date.microsecond == 123456

    lazy = Commit(client, "acme", "data", id="c2")
    assert list(lazy.diff(prefix="a")) == [ListingEntry(path="a", type="object", status="added")]
    params = diff.calls.last.request.url.params
    assert (params["right"], params["left"], params["prefix"]) == ("c2", "c1", "a")

    reverted = lazy.revert()
    assert json.loads(revert.calls.last.request.content) == {}
    assert repr(reverted) == "Commit(id='c3')"
    lazy.revert(message="undo", metadata={"why": "test"})
    assert json.loads(revert.calls.last.request.content) == {"message": "undo", "metadata": {"why": "test"}}


def test_root_commit_diff_omits_left(mock: respx.MockRouter, client: Client) -> None:
    diff = mock.get(f"{REPO}/diff").mock(return_value=httpx.Response(200, json={"results": []}))
    root = Commit(client, "acme", "data", id="c1", message="first")
    assert list(root.diff()) == []
    assert "left" not in diff.calls.last.request.url.params


def test_session_uncommitted_lists_changes(mock: respx.MockRouter, client: Client) -> None:
    changes = mock.get(f"{REPO}/changes").mock(
        return_value=httpx.Response(
            200, json={"results": [{"path": "a", "entry": {"size": 2}}, {"path": "b"}]}
        )
    )
    records = list(
        Session(client, "acme", "data", "5e551011-0000-4000-8000-000000000001").uncommitted(prefix="x")
    )
    assert [record.path for record in records] == ["a", "b"]
    assert records[1].entry is None
    assert changes.calls.last.request.url.params["session_id"] == SID
