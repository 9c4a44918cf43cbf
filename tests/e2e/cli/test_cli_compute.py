"""``tilde exec``, ``shell`` and ``sandbox …`` against a real server with real sandboxes."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
import uuid
from typing import IO, TYPE_CHECKING

import pytest
from cli_helpers import Cli

if TYPE_CHECKING:
    from tilde import Repository
    from tilde.server import LocalServer

pytestmark = pytest.mark.sandbox


def _head(repo: Repository) -> tuple[str, str] | None:
    commit = next(iter(repo.commits.list(amount=1)), None)
    return None if commit is None else (commit.id, commit.message)


def test_exec_streams_output_commits_and_reports(cli: Cli, seeded: Repository, repo_path: str) -> None:
    result = cli(
        "exec", repo_path, "--env", "WHO=world", "--",
        "sh", "-c", 'cat /sandbox/a.txt; echo " hello $WHO"; echo oops >&2; echo made > /sandbox/out.txt',
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "alpha hello world\n"
    assert "oops\n" in result.stderr
    head = _head(seeded)
    assert head is not None
    assert f"Committed the sandbox's changes in commit {head[0]}" in result.stderr
    assert next(iter(seeded.commits.list(amount=1))).objects.get("out.txt").read() == b"made\n"


def test_exec_exit_code_and_rollback(cli: Cli, seeded: Repository, repo_path: str) -> None:
    before = _head(seeded)
    result = cli("exec", repo_path, "--", "sh", "-c", "echo partial > /sandbox/p.txt; exit 3")
    assert result.exit_code == 3
    assert "exited with status 3; its changes were rolled back" in result.stderr
    assert _head(seeded) == before


def test_exec_without_changes_and_with_a_timeout(cli: Cli, seeded: Repository, repo_path: str) -> None:
    before = _head(seeded)
    quiet = cli.ok("exec", repo_path, "--", "true")
    assert "No changes to commit." in quiet.stderr
    timed_out = cli("exec", repo_path, "--timeout", "1", "--", "sleep", "30")
    assert timed_out.exit_code == 124
    assert _head(seeded) == before


def test_exec_bad_input(cli: Cli, repo_path: str) -> None:
    org = repo_path.split("/")[0]
    assert "not found (404)" in cli.fails("exec", f"{org}/missing", "--", "true")
    bad_env = cli("exec", repo_path, "--env", "NOEQUALS", "--", "true")
    assert bad_env.exit_code == 2
    assert "KEY=VALUE" in bad_env.stderr


def test_shell_runs_each_line_and_commits_on_exit(cli: Cli, seeded: Repository, repo_path: str) -> None:
    script = "cd dir\npwd\ncat b.txt\necho new > made.txt\nexit\necho never\n"
    result = cli("shell", repo_path, input=script)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "/sandbox/dir\nbravo"
    assert "Committed the sandbox's changes" in result.stderr
    assert "never" not in result.stdout
    assert next(iter(seeded.commits.list(amount=1))).objects.get("dir/made.txt").read() == b"new\n"


def test_shell_end_of_input_commits_and_rollback_discards(
    cli: Cli, seeded: Repository, repo_path: str
) -> None:
    assert "Committed" in cli.ok("shell", repo_path, input="echo 1 > /sandbox/eof.txt\n").stderr
    committed = _head(seeded)

    result = cli.ok("shell", repo_path, "--rollback", input="echo 2 > /sandbox/discarded.txt\nexit\n")
    assert "Discarded the sandbox's changes." in result.stderr
    assert _head(seeded) == committed


def test_sandbox_list_logs_cancel(cli: Cli, repo: Repository, repo_path: str) -> None:
    done = repo.sandboxes.create(image="ubuntu:22.04", command=["sh", "-c", "echo one; echo two >&2"])
    done.wait(timeout=120)
    running = repo.shell()
    running.wait_until_running(timeout=120)
    try:
        rows = json.loads(cli.ok("sandbox", "list", repo_path, "--json").stdout)
        by_id = {row["id"]: row for row in rows}
        assert by_id[done.id]["state"] == "done"
        assert by_id[running.sandbox_id]["state"] == "running"
        assert {"id", "state", "status_reason", "exit_code", "image"} <= set(by_id[done.id])
        assert "env_vars" not in by_id[done.id]
        assert done.id in cli.ok("sandbox", "list", repo_path).stdout

        assert cli.ok("sandbox", "logs", repo_path, done.id).stdout == "one\ntwo\n"
        # A running sandbox without --follow: what exists so far, then the command returns.
        cli.ok("sandbox", "logs", repo_path, running.sandbox_id)

        assert "Cancelled sandbox" in cli.ok("sandbox", "cancel", repo_path, running.sandbox_id).stderr
        assert running.sandbox.wait(timeout=120).state == "cancelled"
        assert "HTTP 409" in cli.fails("sandbox", "cancel", repo_path, running.sandbox_id)
    finally:
        if running.status().is_active:
            running.cancel()


def test_sandbox_logs_follow_until_the_end(cli: Cli, repo: Repository, repo_path: str) -> None:
    sandbox = repo.sandboxes.create(
        image="ubuntu:22.04", command=["sh", "-c", "echo start; sleep 2; echo end"]
    )
    result = cli.ok("sandbox", "logs", repo_path, sandbox.id, "--follow")
    assert result.stdout == "start\nend\n"
    assert sandbox.status().is_terminal


def test_sandbox_bad_input(cli: Cli, repo_path: str) -> None:
    unknown = str(uuid.uuid4())
    assert "not found (404)" in cli.fails("sandbox", "logs", repo_path, unknown)
    assert "not found (404)" in cli.fails("sandbox", "cancel", repo_path, unknown)
    assert "invalid sandbox id 'nope'" in cli.fails("sandbox", "logs", repo_path, "nope")


def test_exec_message_names_the_commit(cli: Cli, seeded: Repository, repo_path: str) -> None:
    result = cli.ok("exec", repo_path, "-m", "write m", "--", "sh", "-c", "echo m > /sandbox/m.txt")
    head = next(iter(seeded.commits.list(amount=1)))
    assert head.objects.get("m.txt").read() == b"m\n"
    assert head.message == "write m"
    assert "names sandbox commits itself" not in result.stderr


def _read_until(stream: IO[str], marker: str, deadline: float) -> str:
    seen = ""
    while marker not in seen:
        assert time.monotonic() < deadline, seen
        line = stream.readline()
        assert line, seen
        seen += line
    return seen


def test_shell_ctrl_c_twice_discards(server: LocalServer, seeded: Repository, repo_path: str) -> None:
    before = _head(seeded)
    env = {**os.environ, "TILDE_ENDPOINT_URL": server.endpoint_url, "TILDE_API_KEY": server.api_key}
    process = subprocess.Popen(
        [sys.executable, "-m", "tilde", "shell", repo_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdin is not None
        assert process.stderr is not None
        deadline = time.monotonic() + 120
        banner = _read_until(process.stderr, "is running", deadline)
        sandbox_id = banner.split("Sandbox ", 1)[1].split()[0]
        assert process.stdout is not None
        process.stdin.write("echo kept? > /sandbox/ctrl-c.txt && echo written\n")
        process.stdin.flush()
        # The change is made before the first Ctrl-C (else the interrupt could land in the command and
        # the second one after it, which is not two in a row).
        _read_until(process.stdout, "written", deadline)
        process.send_signal(signal.SIGINT)
        _read_until(process.stderr, "Ctrl-C again", deadline)
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "Discarded the sandbox's changes." in rest
    assert seeded.sandboxes.get(sandbox_id).wait(timeout=120).state == "cancelled"
    assert _head(seeded) == before


def test_shell_on_a_terminal_prompts_and_reads_lines(
    server: LocalServer, seeded: Repository, repo_path: str
) -> None:
    env = {**os.environ, "TILDE_ENDPOINT_URL": server.endpoint_url, "TILDE_API_KEY": server.api_key}
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "tilde", "shell", repo_path],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        os.write(controller, b"echo on-a-tty > /sandbox/tty.txt\ncat /sandbox/tty.txt\nexit\n")
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        os.close(controller)
        os.close(terminal)
    assert process.returncode == 0, err
    assert "tilde> " in out
    assert "on-a-tty\n" in out
    assert "Committed the sandbox's changes" in err
    assert next(iter(seeded.commits.list(amount=1))).objects.get("tty.txt").read() == b"on-a-tty\n"
