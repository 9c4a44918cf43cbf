"""Commits against a real server: history, historic reads, diffs, reverts, conflicts, attach, approval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings

import httpx
import pytest

from tilde.core.errors import ConflictError, NotFoundError
from tilde.data import Client, Commit, ReadOnlyObjects, Repository


def _latest(repo: Repository) -> ReadOnlyObjects:
    return ReadOnlyObjects(repo._client, repo.org, repo.name)


def _commit(repo: Repository, message: str, **changes: bytes | None) -> str:
    with repo.session() as session:
        for path, data in changes.items():
            if data is None:
                session.objects.delete(path)
            else:
                session.objects.put(path, data)
        commit_id = session.commit(message, metadata={"step": message})
    assert commit_id
    return commit_id


def test_history_is_newest_first_and_commits_load_lazily(repo: Repository) -> None:
    first = _commit(repo, "one", a=b"1")
    second = _commit(repo, "two", a=b"2", b=b"x")
    third = _commit(repo, "three", b=None)
    listed = list(repo.commits.list())
    assert [commit.id for commit in listed][:3] == [third, second, first]
    assert [commit.message for commit in listed][:3] == ["three", "two", "one"]
    assert listed[0].parents == [second]
    assert listed[0].metadata == {"step": "three"}
    assert listed[0].committer
    assert listed[0].creation_date is not None
    assert [commit.id for commit in repo.commits.list(ref=second)][:2] == [second, first]
    assert [commit.id for commit in repo.commits.list(amount=2, page_size=1)] == [third, second]
    lazy = Commit(repo._client, repo.org, repo.name, id=second)
    assert lazy.message == "two"
    assert repo.commits.get(first).message == "one"
    with pytest.raises(NotFoundError):
        repo.commits.get("0" * 40)


def test_commit_objects_read_that_commits_state(repo: Repository) -> None:
    first = _commit(repo, "v1", data=b"version one", gone=b"here")
    _commit(repo, "v2", data=b"version two", gone=None)
    old = repo.commits.get(first).objects
    assert old.get("data").read() == b"version one"
    assert old.head("gone").content_length == 4
    assert [entry.path for entry in old.list()] == ["data", "gone"]
    assert _latest(repo).get("data").read() == b"version two"
    assert [entry.path for entry in _latest(repo).list()] == ["data"]


def test_diff_against_first_parent(repo: Repository) -> None:
    root = _commit(repo, "root", keep=b"k", change=b"c1", drop=b"d")
    child = _commit(repo, "child", change=b"c2", drop=None, add=b"a")
    statuses = {entry.path: entry.status for entry in repo.commits.get(child).diff()}
    assert statuses == {"add": "added", "change": "modified", "drop": "removed"}
    root_diff = {entry.path: entry.status for entry in repo.commits.get(root).diff()}
    assert root_diff == {"keep": "added", "change": "added", "drop": "added"}
    assert [entry.path for entry in repo.commits.get(child).diff(prefix="ch")] == ["change"]


def test_revert_undoes_one_commit(repo: Repository) -> None:
    _commit(repo, "base", a=b"1", b=b"2")
    bad = _commit(repo, "bad", a=b"broken", c=b"new")
    reverted = repo.commits.get(bad).revert(message="undo bad")
    assert repr(reverted) == f"Commit(id={reverted.id!r})"
    assert reverted.message == "undo bad"
    assert reverted.parents == [bad]
    latest = _latest(repo)
    assert latest.get("a").read() == b"1"
    with pytest.raises(NotFoundError):
        latest.head("c")
    default = repo.commits.get(_commit(repo, "again", b=b"3")).revert()
    assert "again" in default.message


def test_two_sessions_on_one_path_one_conflict_no_data_lost(repo: Repository) -> None:
    _commit(repo, "base", shared=b"base")
    first = repo.session()
    second = repo.session()
    first.objects.put("shared", b"from first")
    second.objects.put("shared", b"from second")
    second.objects.put("other", b"only second")
    assert first.commit("first wins")
    with pytest.raises(ConflictError):
        second.commit("second loses")
    # Nothing of the losing session was applied; the winner's bytes are intact.
    assert _latest(repo).get("shared").read() == b"from first"
    with pytest.raises(NotFoundError):
        _latest(repo).head("other")
    # The loser still holds its staged data and can be rolled back and redone on top.
    assert second.objects.get("shared").read() == b"from second"
    second.rollback()
    _commit(repo, "redo", other=b"only second")
    assert _latest(repo).get("other").read() == b"only second"


def test_disjoint_sessions_both_commit(repo: Repository) -> None:
    _commit(repo, "base", x=b"0")
    left = repo.session()
    right = repo.session()
    left.objects.put("left", b"L")
    right.objects.put("right", b"R")
    assert left.commit("left")
    assert right.commit("right")
    assert {entry.path for entry in _latest(repo).list()} == {"x", "left", "right"}


def test_attach_from_another_process(repo: Repository, client: Client) -> None:
    session = repo.session()
    session.objects.put("from-parent", b"parent")
    script = (
        "import json, os, sys\n"
        "from tilde.data import Client\n"
        "client = Client()\n"
        "session = client.repository(os.environ['REPO']).attach(os.environ['SESSION'])\n"
        "seen = session.objects.get('from-parent').read().decode()\n"
        "session.objects.put('from-child', b'child')\n"
        "print(json.dumps({'seen': seen}))\n"
        "client.close()\n"
    )
    env = {
        **os.environ,
        "TILDE_ENDPOINT_URL": client._config.endpoint_url,
        "TILDE_API_KEY": client._config.api_key or "",
        "REPO": f"{repo.org}/{repo.name}",
        "SESSION": session.session_id,
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"seen": "parent"}
    assert session.commit("two processes")
    latest = _latest(repo)
    assert latest.get("from-child").read() == b"child"
    assert latest.get("from-parent").read() == b"parent"


def test_blocking_commit_waits_for_a_human_approval(
    api: httpx.Client, org_name: str, repo_path: str, client: Client
) -> None:
    repo_name = repo_path.split("/", 1)[1]
    response = api.put(
        f"/organizations/{org_name}/repositories/{repo_name}", json={"agent_commits_require_approval": True}
    )
    assert response.status_code == 200, response.text
    response = api.post(f"/organizations/{org_name}/agents", json={"name": "uploader", "description": "bot"})
    assert response.status_code == 201, response.text
    response = api.put(f"/organizations/{org_name}/agents/uploader", json={"inline_policy": "*()"})
    assert response.status_code == 200, response.text
    response = api.post(f"/organizations/{org_name}/agents/uploader/auth/keys", json={"name": "k"})
    assert response.status_code == 201, response.text
    token = response.json()["token"]

    with Client(endpoint_url=client._config.endpoint_url, api_key=token) as agent:
        session = agent.repository(repo_path).session()
        session.objects.put("needs-review.txt", b"agent data")
        outcome: dict[str, object] = {}

        def commit() -> None:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    outcome["result"] = session.commit("agent commit")
                outcome["warnings"] = [str(warning.message) for warning in caught]
            except BaseException as exc:
                outcome["error"] = exc

        waiter = threading.Thread(target=commit)
        waiter.start()
        try:
            approve = (
                f"/organizations/{org_name}/repositories/{repo_name}/sessions/{session.session_id}/approve"
            )
            # Poll with a deadline until the commit is parked for approval, then approve it as the admin.
            deadline = time.monotonic() + 60
            status = api.head(approve).status_code
            while status != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
                status = api.head(approve).status_code
            assert status == 200
            assert waiter.is_alive()  # blocked on the approval
            approved = api.post(approve, json={"message": "looks good"})
            assert approved.status_code == 200, approved.text
        finally:
            waiter.join(timeout=60)
        assert not waiter.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"] == ""
    messages = outcome["warnings"]
    assert isinstance(messages, list)
    assert any(message.startswith("Approval required - review and approve at: ") for message in messages)
    assert _latest(client.repository(repo_path)).get("needs-review.txt").read() == b"agent data"
