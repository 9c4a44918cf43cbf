"""``tilde log``, ``diff`` and ``revert`` against a real server."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cli_helpers import Cli

if TYPE_CHECKING:
    from tilde import Repository


def _commit(repo: Repository, message: str, put: dict[str, bytes], delete: tuple[str, ...] = ()) -> str:
    with repo.session() as session:
        for path, data in put.items():
            session.objects.put(path, data)
        for path in delete:
            session.objects.delete(path)
        commit_id = session.commit(message)
    assert commit_id
    return commit_id


def test_log_newest_first_with_limit_and_json(cli: Cli, repo: Repository, repo_path: str) -> None:
    ids = [_commit(repo, f"change {n}", {f"f{n}.txt": b"x"}) for n in range(3)]

    rows = json.loads(cli.ok("log", repo_path, "--json").stdout)
    assert [row["id"] for row in rows[:3]] == ids[::-1]
    assert rows[0]["message"] == "change 2"
    assert {"id", "message", "committer", "creation_date", "parents"} <= set(rows[0])
    assert len(json.loads(cli.ok("log", repo_path, "-n", "2", "--json").stdout)) == 2

    lines = cli.ok("log", repo_path, "-n", "1").stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(ids[2])
    assert lines[0].endswith("change 2")


def test_diff_between_commits_and_to_the_latest(cli: Cli, repo: Repository, repo_path: str) -> None:
    first = _commit(repo, "one", {"keep.txt": b"k", "edit.txt": b"1", "gone.txt": b"g"})
    second = _commit(repo, "two", {"edit.txt": b"2", "new.txt": b"n"}, delete=("gone.txt",))

    assert cli.ok("diff", repo_path, first, second).stdout.splitlines() == [
        "~ edit.txt",
        "- gone.txt",
        "+ new.txt",
    ]
    rows = json.loads(cli.ok("diff", repo_path, first, "--json").stdout)
    assert [(row["path"], row["status"]) for row in rows] == [
        ("edit.txt", "modified"),
        ("gone.txt", "removed"),
        ("new.txt", "added"),
    ]
    assert rows[0]["type"] == "object"
    assert cli.ok("diff", repo_path, second).stdout == ""


def test_revert_makes_a_new_commit(cli: Cli, repo: Repository, repo_path: str) -> None:
    _commit(repo, "base", {"a.txt": b"1"})
    bad = _commit(repo, "bad", {"a.txt": b"2"})

    result = cli.ok("revert", repo_path, bad, "-m", "undo bad")

    new_id = result.stdout.strip()
    assert f"Reverted {bad} in commit {new_id}" in result.stderr
    head = next(iter(repo.commits.list(amount=1)))
    assert (head.id, head.message) == (new_id, "undo bad")
    assert head.objects.get("a.txt").read() == b"1"


def test_history_bad_input(cli: Cli, repo: Repository, repo_path: str) -> None:
    org = repo_path.split("/")[0]
    assert "not found (404)" in cli.fails("log", f"{org}/missing")
    assert "has no commits yet" in cli.fails("diff", repo_path, "abc")
    _commit(repo, "c", {"a": b"1"})
    assert "commit 'abc' not found" in cli.fails("diff", repo_path, "abc")
    assert "not found (404)" in cli.fails("revert", repo_path, "0" * 64)
    assert cli("log", repo_path, "-n", "0").exit_code == 2
