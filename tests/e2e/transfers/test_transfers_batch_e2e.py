"""The batch routes: used when advertised, atomic, checked, authorized per path; and the fallback."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from transfers_helpers import TREE, read_tree, tar_header_only, tar_of, write_tree

from tilde.core.errors import ForbiddenError
from tilde.data import Client, ReadOnlyObjects, Repository

if TYPE_CHECKING:
    from tilde.server import LocalServer

SMALL = {f"d{i % 7}/f{i:04d}.txt": f"file number {i}\n".encode() for i in range(600)}


def _session(api: httpx.Client, repo_path: str) -> str:
    response = api.post(
        f"/organizations/{repo_path.split('/')[0]}/repositories/{repo_path.split('/')[1]}/sessions"
    )
    assert response.status_code == 201, response.text
    session_id: str = response.json()["session_id"]
    return session_id


def _repo_url(repo_path: str) -> str:
    org, name = repo_path.split("/")
    return f"/organizations/{org}/repositories/{name}"


def _post_batch(
    http: httpx.Client, repo_path: str, session_id: str, body: bytes, *, prefix: str = "", **headers: str
) -> httpx.Response:
    return http.post(
        f"{_repo_url(repo_path)}/objects:batch",
        params={"session_id": session_id, "prefix": prefix},
        content=body,
        headers={"Content-Type": "application/x-tar", **headers},
    )


def _staged(api: httpx.Client, repo_path: str, session_id: str) -> list[str]:
    response = api.get(f"{_repo_url(repo_path)}/changes", params={"session_id": session_id, "amount": 1000})
    assert response.status_code == 200, response.text
    return [item["path"] for item in response.json()["results"]]


def test_capabilities_advertise_the_batch_routes(api: httpx.Client) -> None:
    document = api.get("/capabilities").json()
    upload, download = document["batch_upload"], document["batch_download"]
    assert upload["path"] == "/organizations/{org}/repositories/{repo}/objects:batch"
    assert upload["content_type"] == "application/x-tar"
    assert min(upload["max_files"], upload["max_file_bytes"], upload["max_body_bytes"]) > 0
    assert download["path"] == "/organizations/{org}/repositories/{repo}/objects:download"


def test_small_files_travel_in_a_few_batch_requests(
    repo: Repository, requests_seen: list[tuple[str, str]], tmp_path: Path
) -> None:
    write_tree(tmp_path / "src", SMALL)
    with repo.session() as session:
        result = session.objects.upload_folder(tmp_path / "src", "small")
        session.commit("600 small files")
    assert result.files == 600
    methods = [(method, path.rsplit("/", 1)[-1]) for method, path in requests_seen]
    batches = methods.count(("POST", "objects:batch"))
    assert 1 <= batches <= 20
    assert ("PUT", "object") not in methods
    assert ("POST", "finalize") not in methods
    assert methods.count(("GET", "capabilities")) == 1
    requests_seen.clear()
    ReadOnlyObjects(repo._client, repo.org, repo.name).download("small", tmp_path / "out")
    methods = [(method, path.rsplit("/", 1)[-1]) for method, path in requests_seen]
    assert ("GET", "object") not in methods
    assert 1 <= methods.count(("POST", "objects:download")) <= 20
    assert ("GET", "capabilities") not in methods  # asked once per client
    assert read_tree(tmp_path / "out") == SMALL


@pytest.mark.backends("local", "s3")  # switched off in the environment of an in-process server
@pytest.mark.usefixtures("batches_off")
def test_without_batch_routes_the_per_file_flow_is_used_and_remembered(
    repo: Repository, requests_seen: list[tuple[str, str]], tmp_path: Path
) -> None:
    write_tree(tmp_path / "src", TREE)
    with repo.session() as session:
        first = session.objects.upload_folder(tmp_path / "src", "one")
        second = session.objects.upload_folder(tmp_path / "src", "two")
        session.commit("per file")
    assert first.files == second.files == len(TREE)
    methods = [(method, path.rsplit("/", 1)[-1]) for method, path in requests_seen]
    assert methods.count(("GET", "capabilities")) == 1  # the 404 is remembered for the client's life
    assert ("POST", "objects:batch") not in methods
    assert methods.count(("PUT", "object")) == methods.count(("POST", "finalize")) == 2 * len(TREE)
    objects = ReadOnlyObjects(repo._client, repo.org, repo.name)
    objects.download("one", tmp_path / "one")
    objects.download("two", tmp_path / "two")
    assert read_tree(tmp_path / "one") == read_tree(tmp_path / "two") == TREE
    assert ("POST", "objects:download") not in [(m, p.rsplit("/", 1)[-1]) for m, p in requests_seen]


@pytest.mark.backends("local", "s3")  # switched off in the environment of an in-process server
@pytest.mark.usefixtures("batches_off")
def test_switched_off_routes_answer_404(api: httpx.Client, repo_path: str) -> None:
    assert api.get("/capabilities").status_code == 404
    session_id = _session(api, repo_path)
    assert _post_batch(api, repo_path, session_id, tar_of([("a.txt", b"a")])).status_code == 404


def test_a_batch_is_staged_whole(api: httpx.Client, repo_path: str) -> None:
    session_id = _session(api, repo_path)
    response = _post_batch(
        api, repo_path, session_id, tar_of([("x/a.txt", b"a"), ("x/b.txt", b"")]), prefix="x/"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["staged"] == 2
    assert [(o["path"], o["size"]) for o in body["objects"]] == [("x/a.txt", 1), ("x/b.txt", 0)]
    assert all(o["etag"].startswith('"') for o in body["objects"])
    assert _staged(api, repo_path, session_id) == ["x/a.txt", "x/b.txt"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (tar_of([("ok.txt", b"fine"), ("bad/../path.txt", b"x")]), 400, "invalid_path"),
        (tar_of([("ok.txt", b"fine"), ("/absolute.txt", b"x")]), 400, "invalid_path"),
        (tar_of([("ok.txt", b"fine"), ("ok.txt", b"again")]), 400, "duplicate_path"),
        (tar_of([("ok.txt", b"fine")], link="link.txt"), 400, "invalid_archive"),
        (b"this is not a tar archive at all" * 40, 400, "invalid_archive"),
        (tar_of([]), 400, "invalid_archive"),
        (tar_of([("ok.txt", b"fine"), ("cut.txt", b"y" * 5000)])[:1536], 400, "invalid_archive"),
    ],
    ids=["dotdot", "absolute", "duplicate", "symlink", "not-tar", "empty", "truncated"],
)
def test_one_bad_member_stages_nothing(
    api: httpx.Client, repo_path: str, body: bytes, status: int, code: str
) -> None:
    session_id = _session(api, repo_path)
    response = _post_batch(api, repo_path, session_id, body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert _staged(api, repo_path, session_id) == []


def test_limits_and_media_type(api: httpx.Client, repo_path: str) -> None:
    session_id = _session(api, repo_path)
    wrong_type = _post_batch(
        api, repo_path, session_id, tar_of([("a", b"a")]), **{"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    # A header claiming more than the per-file limit is refused from the header alone.
    too_big = _post_batch(api, repo_path, session_id, tar_header_only("huge.bin", 17 * 1024 * 1024))
    assert too_big.status_code == 413, too_big.text
    outside = _post_batch(
        api, repo_path, session_id, tar_of([("a/x.txt", b"x"), ("b/y.txt", b"y")]), prefix="a/"
    )
    assert outside.status_code == 400
    assert _staged(api, repo_path, session_id) == []


def test_a_closed_session_takes_no_batch(api: httpx.Client, repo_path: str) -> None:
    session_id = _session(api, repo_path)
    assert api.delete(f"{_repo_url(repo_path)}/sessions/{session_id}").status_code == 204
    assert _post_batch(api, repo_path, session_id, tar_of([("a.txt", b"a")])).status_code == 409


def test_download_batch_validates_its_list(api: httpx.Client, repo_path: str) -> None:
    session_id = _session(api, repo_path)
    assert _post_batch(api, repo_path, session_id, tar_of([("a.txt", b"a")])).status_code == 201
    url = f"{_repo_url(repo_path)}/objects:download"
    assert api.post(url, params={"session_id": session_id}, json={"paths": []}).status_code == 400
    assert (
        api.post(url, params={"session_id": session_id}, json={"paths": ["a.txt", "a.txt"]}).status_code
        == 400
    )
    assert (
        api.post(url, params={"session_id": session_id}, json={"paths": ["a.txt", "nope"]}).status_code == 404
    )
    # Without session_id the head is read, where nothing is committed yet.
    assert api.post(url, json={"paths": ["a.txt"]}).status_code == 404
    ok = api.post(url, params={"session_id": session_id}, json={"paths": ["a.txt"]})
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/x-tar"
    assert int(ok.headers["content-length"]) == len(ok.content)


def _scoped_user(server: LocalServer, api: httpx.Client, repo_path: str) -> httpx.Client:
    """A member whose only write right is PutObject under ``allowed/`` (plus what a session needs)."""
    org = repo_path.split("/")[0]
    name = f"writer-{repo_path.split('/')[1][-8:]}"
    token = server.create_api_key("user", name, org)
    members = api.get(f"/organizations/{org}/members").json()["results"]
    user_id = next(m["user_id"] for m in members if m["username"] == name)
    text = "GetRepository()\nCreateSession()\nRollbackSession()\nListObjects()\nGetObject()\n"
    text += 'PutObject(path="allowed/")\n'
    created = api.post(f"/organizations/{org}/policies", json={"name": f"p-{name}", "policy_text": text})
    assert created.status_code == 201, created.text
    attached = api.post(
        f"/organizations/{org}/policies/{created.json()['id']}/attachments",
        json={"principal_type": "user", "principal_id": user_id},
    )
    assert attached.status_code == 201, attached.text
    return httpx.Client(base_url=str(api.base_url), headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_policies_apply_to_every_path_of_a_batch(
    server: LocalServer, api: httpx.Client, repo_path: str, tmp_path: Path
) -> None:
    with _scoped_user(server, api, repo_path) as user:
        session_id = _session(user, repo_path)
        inside = tar_of([("allowed/a.txt", b"a"), ("allowed/b.txt", b"b")])
        assert _post_batch(user, repo_path, session_id, inside, prefix="allowed/").status_code == 201
        # The prefix check passes ("allowed/"), the second path does not: refused whole, nothing more staged.
        sneaky = tar_of([("allowed/c.txt", b"c"), ("other/d.txt", b"d")])
        refused = _post_batch(user, repo_path, session_id, sneaky)
        assert refused.status_code == 403
        assert "PutObject" in refused.json()["message"]
        assert _staged(api, repo_path, session_id) == ["allowed/a.txt", "allowed/b.txt"]
        token = user.headers["Authorization"].removeprefix("Bearer ")
    # Through the SDK: the refused batch is retried file by file, and the first forbidden file fails.
    write_tree(tmp_path / "src", {"a.txt": b"a", "b.txt": b"b"})
    with Client(endpoint_url=server.endpoint_url, api_key=token) as client:
        repo = client.repository(repo_path)
        with repo.session() as session:
            assert session.objects.upload_folder(tmp_path / "src", "allowed").files == 2
            with pytest.raises(ForbiddenError):
                session.objects.upload_folder(tmp_path / "src", "elsewhere")
