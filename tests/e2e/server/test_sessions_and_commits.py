"""Sessions, commits, log, diff and revert over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from tilde.server import LocalServer

ExpectError = Callable[..., dict[str, Any]]


def test_commit_log_and_get(repo: Any) -> None:
    session = repo.new_session()
    repo.put(session, "a.txt", b"a")
    response = repo.commit(session, "first", metadata={"k": "v"})
    assert response.status_code == 200
    commit_id = response.json()["commit_id"]
    commit = repo.api.get(repo.url(f"/commits/{commit_id}")).json()
    assert commit["id"] == commit_id
    assert commit["message"] == "first"
    assert commit["metadata"] == {"k": "v"}
    assert commit["parents"] == []
    assert commit["committer"] == "admin"
    assert commit["committer_type"] == "user"
    assert commit["committer_id"]
    assert commit["creation_date"].endswith("Z")
    assert commit["is_stale"] is False
    assert commit["object_count"] == 1
    second = repo.write_files({"b.txt": b"bb"}, "second")
    log = repo.api.get(repo.url("/log")).json()["results"]
    assert [c["id"] for c in log] == [second, commit_id]
    assert log[0]["parents"] == [commit_id]


def test_log_paginates_and_honours_ref(repo: Any) -> None:
    ids = [repo.write_files({f"f{i}": b"x"}, f"c{i}") for i in range(5)]
    seen: list[str] = []
    params: dict[str, Any] = {"amount": 2}
    while True:
        page = repo.api.get(repo.url("/log"), params=params).json()
        seen += [c["id"] for c in page["results"]]
        if not page["pagination"]["has_more"]:
            break
        params["after"] = page["pagination"]["next_offset"]
    assert seen == ids[::-1]
    from_ref = repo.api.get(repo.url("/log"), params={"ref": ids[1]}).json()["results"]
    assert [c["id"] for c in from_ref] == [ids[1], ids[0]]


def test_committed_session_is_closed(repo: Any, assert_error: ExpectError) -> None:
    session = repo.new_session()
    repo.put(session, "a", b"a")
    repo.commit_ok(session)
    assert_error(repo.commit(session), 409)
    assert_error(repo.api.put(repo.url("/object"), params={"session_id": session, "path": "b"}), 409)
    assert_error(repo.api.delete(repo.url(f"/sessions/{session}")), 409)


def test_commit_without_changes(repo: Any) -> None:
    head = repo.write_files({"a": b"a"})
    session = repo.new_session()
    response = repo.commit(session, "nothing")
    assert response.status_code == 200
    assert response.json()["commit_id"] == head
    assert len(repo.api.get(repo.url("/log")).json()["results"]) == 1


def test_rollback_discards(repo: Any, assert_error: ExpectError) -> None:
    session = repo.new_session()
    repo.put(session, "a", b"a")
    assert repo.api.delete(repo.url(f"/sessions/{session}")).status_code == 204
    assert_error(repo.commit(session), 409)
    assert repo.api.get(repo.url("/objects")).json()["results"] == []


def test_conflicting_commit_is_409_and_changes_nothing(repo: Any, assert_error: ExpectError) -> None:
    repo.write_files({"shared.txt": b"v1"})
    slow, fast = repo.new_session(), repo.new_session()
    repo.put(slow, "shared.txt", b"slow")
    repo.put(fast, "shared.txt", b"fast")
    repo.commit_ok(fast, "fast wins")
    assert_error(repo.commit(slow, "too late"), 409, "conflict")
    assert repo.read("shared.txt").content == b"fast"
    # The losing session stays open and can be rolled back.
    assert repo.api.delete(repo.url(f"/sessions/{slow}")).status_code == 204


def test_bad_commit_requests(repo: Any, assert_error: ExpectError) -> None:
    session = repo.new_session()
    assert_error(repo.api.post(repo.url(f"/sessions/{session}"), content=b"{oops"), 400, "invalid_json")
    assert_error(repo.commit(session, metadata={"k": 1}), 400, "invalid_field")
    assert_error(repo.api.post(repo.url(f"/sessions/{session}"), json={"message": 5}), 400)
    assert_error(repo.commit("00000000-0000-4000-8000-000000000000"), 404)
    assert_error(repo.commit("not-a-uuid"), 404)
    assert_error(repo.api.get(repo.url("/commits/" + "0" * 64)), 404)
    assert_error(repo.api.get(repo.url("/commits/not-hex")), 404)


def test_diff_between_commits(repo: Any, assert_error: ExpectError) -> None:
    first = repo.write_files({"keep": b"k", "change": b"1", "remove": b"r"})
    session = repo.new_session()
    repo.put(session, "change", b"2")
    repo.put(session, "add", b"a")
    repo.api.delete(repo.url("/object"), params={"session_id": session, "path": "remove"})
    second = repo.commit_ok(session)
    diff = repo.api.get(repo.url("/diff"), params={"left": first, "right": second}).json()["results"]
    assert {(d["path"], d["status"]) for d in diff} == {
        ("add", "added"),
        ("change", "modified"),
        ("remove", "removed"),
    }
    root = repo.api.get(repo.url("/diff"), params={"right": first}).json()["results"]
    assert {(d["path"], d["status"]) for d in root} == {
        ("keep", "added"),
        ("change", "added"),
        ("remove", "added"),
    }
    assert_error(repo.api.get(repo.url("/diff")), 400, "missing_parameter")
    assert_error(repo.api.get(repo.url("/diff"), params={"right": "f" * 64}), 404)


def test_revert(repo: Any, assert_error: ExpectError) -> None:
    first = repo.write_files({"a": b"1"}, "one")
    second = repo.write_files({"a": b"2", "b": b"new"}, "two")
    response = repo.api.post(repo.url(f"/commits/{second}/revert"), json={})
    assert response.status_code == 201
    reverted = repo.api.get(repo.url(f"/commits/{response.json()['commit_id']}")).json()
    assert reverted["message"] == 'Revert "two"'
    assert reverted["parents"] == [second]
    assert repo.read("a").content == b"1"
    assert repo.read("b").status_code == 404
    assert_error(repo.api.post(repo.url(f"/commits/{first}/revert"), json={}), 400)
    assert_error(repo.api.post(repo.url("/commits/" + "0" * 64 + "/revert"), json={}), 404)
    undo = response.json()["commit_id"]
    custom = repo.api.post(
        repo.url(f"/commits/{undo}/revert"), json={"message": "again", "metadata": {"x": "y"}}
    )
    assert custom.status_code == 201
    redone = repo.api.get(repo.url(f"/commits/{custom.json()['commit_id']}")).json()
    assert redone["message"] == "again"
    assert redone["metadata"] == {"x": "y"}
    assert repo.read("a").content == b"2"
    assert repo.read("b").content == b"new"


def test_commit_listeners_hear_every_commit(repo: Any, server: LocalServer) -> None:
    heard: list[tuple[str, str, str]] = []
    done = threading.Event()

    def listener(org: str, record: Any, commit: Any) -> None:
        heard.append((org, record.name, commit.id))
        if len(heard) >= 3:
            done.set()

    def broken(org: str, record: Any, commit: Any) -> None:
        raise RuntimeError("listener failure must not break commits")

    server.app.state.commit_listeners.extend([broken, listener])
    try:
        first = repo.write_files({"a": b"1"})
        second = repo.write_files({"b": b"2"})
        revert = repo.api.post(repo.url(f"/commits/{second}/revert"), json={})
        assert revert.status_code == 201
        assert done.wait(timeout=30)
    finally:
        server.app.state.commit_listeners.remove(broken)
        server.app.state.commit_listeners.remove(listener)
    assert (repo.org, repo.name, first) in heard
    assert (repo.org, repo.name, second) in heard
    assert (repo.org, repo.name, revert.json()["commit_id"]) in heard


@pytest.mark.parametrize("amount", ["0", "1001", "x"])
def test_page_size_limits_on_every_list(repo: Any, assert_error: ExpectError, amount: str) -> None:
    session = repo.new_session()
    for suffix, extra in [
        ("/objects", {}),
        ("/changes", {"session_id": session}),
        ("/log", {}),
        ("/diff", {}),
    ]:
        assert_error(repo.api.get(repo.url(suffix), params={"amount": amount, **extra}), 400)


def test_concurrent_sessions_commit_disjoint_paths(repo: Any) -> None:
    sessions = [repo.new_session() for _ in range(4)]
    for i, session in enumerate(sessions):
        repo.put(session, f"p{i}", str(i).encode())
    errors: list[BaseException] = []

    def commit(session: str) -> None:
        try:
            repo.commit_ok(session)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert [e["path"] for e in repo.api.get(repo.url("/objects")).json()["results"]] == [
        "p0",
        "p1",
        "p2",
        "p3",
    ]
