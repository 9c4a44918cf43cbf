"""repo.execute(): one-shot sandboxes whose changes commit only when the command succeeds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import tilde
from tilde.compute import Repository
from tilde.core import CommandError

pytestmark = pytest.mark.sandbox

EDIT_SCRIPT = """
import os
root = "/sandbox"
with open(os.path.join(root, "data/edit.txt"), "a") as f:
    f.write("more\\n")
os.makedirs(os.path.join(root, "data/new"), exist_ok=True)
with open(os.path.join(root, "data/new/added.txt"), "w") as f:
    f.write("added\\n")
os.remove(os.path.join(root, "data/gone.txt"))
open(os.path.join(root, "data/same.txt"), "r+").close()  # opened for writing, not changed
print("edited")
"""


def _objects(repo: Repository) -> dict[str, bytes]:
    commit = next(iter(repo.commits.list(amount=1)))
    return {entry.path: commit.objects.get(entry.path).read() for entry in commit.objects.list()}


def test_execute_commits_exactly_the_edits_adds_and_deletes(
    repo: Repository, seed: Callable[..., str], head: Callable[[], str | None]
) -> None:
    base = seed({"data/edit.txt": b"start\n", "data/gone.txt": b"bye\n", "data/same.txt": b"same\n"})
    result = repo.execute(["python3", "-c", EDIT_SCRIPT], image="python:3.12")
    assert result.exit_code == 0
    assert "edited\n" in result.stdout.text()
    assert result.stderr == b""
    commit_id = head()
    assert commit_id not in (None, base)
    assert _objects(repo) == {
        "data/edit.txt": b"start\nmore\n",
        "data/new/added.txt": b"added\n",
        "data/same.txt": b"same\n",
    }
    commit = repo.commits.get(commit_id or "")
    changes = {entry.path: entry.status for entry in commit.diff()}
    assert changes == {"data/edit.txt": "modified", "data/new/added.txt": "added", "data/gone.txt": "removed"}


def test_failing_execute_raises_and_commits_nothing(
    repo: Repository, seed: Callable[..., str], head: Callable[[], str | None]
) -> None:
    base = seed({"keep.txt": b"keep\n"})
    with pytest.raises(CommandError) as info:
        repo.execute("echo partial > /sandbox/keep.txt; echo failing >&2; exit 3")
    assert info.value.result.exit_code == 3
    assert "failing" in info.value.result.stdout.text()  # stderr is merged into stdout
    assert head() == base
    assert _objects(repo) == {"keep.txt": b"keep\n"}


def test_check_false_returns_the_exit_code(repo: Repository, head: Callable[[], str | None]) -> None:
    result = repo.execute(["sh", "-c", "echo out; echo err >&2; exit 4"], check=False)
    assert result.exit_code == 4
    lines = result.stdout.text().splitlines()
    assert set(lines[-2:]) == {"out", "err"}  # merged; separate pipes need not keep their relative order
    assert head() is None


def test_execute_without_changes_commits_nothing(repo: Repository, seed: Callable[..., str]) -> None:
    base = seed({"a.txt": b"a"})
    result = repo.execute("cat /sandbox/a.txt")
    assert result.stdout.text().endswith("a")
    assert next(iter(repo.commits.list(amount=1))).id == base


def test_execute_timeout_fails_without_committing(repo: Repository, head: Callable[[], str | None]) -> None:
    result = repo.execute("echo x > /sandbox/x.txt; sleep 30", timeout=1, check=False)
    assert result.exit_code != 0
    assert head() is None
    statuses = [sandbox.status() for sandbox in repo.sandboxes.list()]
    assert [(s.state, s.status_reason) for s in statuses] == [("failed", "timeout")]


def test_path_prefix_and_mountpoint(repo: Repository, seed: Callable[..., str]) -> None:
    seed({"in/a.csv": b"1\n", "other/b.csv": b"2\n"})
    result = repo.execute("ls -R /data; echo c > /data/c.csv", mountpoint="/data", path_prefix="in/")
    assert "a.csv" in result.stdout.text()
    assert "b.csv" not in result.stdout.text()
    assert _objects(repo)["in/c.csv"] == b"c\n"


def test_the_facade_repository_has_compute(server: Any, repo_path: str) -> None:
    with tilde.Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        repo = client.repository(repo_path)
        with repo.shell() as sh:
            assert sh.run("echo facade").stdout == b"facade\n"
        assert repo.execute(["true"]).exit_code == 0
