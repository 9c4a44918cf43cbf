"""/exec over a real websocket into a service sandbox (CONTRACT §7)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sandbox_helpers import Sandboxes, diff, head_commit, list_objects, read_object
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

pytestmark = pytest.mark.sandbox

MIB = 1024 * 1024


def test_stdout_stderr_and_exit_code_are_kept_apart(
    sandboxes: Sandboxes, service: Callable[..., str]
) -> None:
    sid = service()
    result = sandboxes.exec(sid, "echo out; echo err >&2; echo more; exit 3")
    assert result.stdout == b"out\nmore\n"
    assert result.stderr == b"err\n"
    assert result.exit_code == 3


def test_argv_is_executed_without_a_shell(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service()
    result = sandboxes.exec(sid, ["printf", "%s|", "a b", "$HOME", ";"])
    assert result.stdout == b"a b|$HOME|;|"
    assert result.exit_code == 0


def test_stdin_is_delivered_then_closed(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service()
    result = sandboxes.exec(sid, ["wc", "-c"], stdin=b"x" * 100_000)
    assert result.stdout.strip() == b"100000"
    empty = sandboxes.exec(sid, ["cat"], stdin=b"")
    assert empty.stdout == b""
    assert empty.exit_code == 0


def test_commands_ignoring_stdin_run_without_it(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service()
    # No STDIN_CLOSE is ever sent: the command must still run and exit.
    result = sandboxes.exec(sid, "echo hi")
    assert result.stdout == b"hi\n"


def test_env_is_merged_and_cwd_applies(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service(env_vars={"BASE": "one", "OVERRIDE": "sandbox"})
    result = sandboxes.exec(
        sid, 'echo "$BASE $OVERRIDE $EXTRA"; pwd', env={"OVERRIDE": "launch", "EXTRA": "x"}, cwd="/tmp"
    )
    assert result.stdout == b"one launch x\n/tmp\n"
    default_cwd = sandboxes.exec(sid, "pwd")
    assert default_cwd.stdout == b"/sandbox\n"


def test_missing_program_exits_127(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service()
    result = sandboxes.exec(sid, ["definitely-not-a-program"])
    assert result.exit_code == 127
    assert b"definitely-not-a-program" in result.stderr


def test_large_output_is_split_into_frames_of_at_most_one_mib(
    sandboxes: Sandboxes, service: Callable[..., str]
) -> None:
    sid = service()
    size = 3 * MIB + 123
    result = sandboxes.exec(sid, ["python3", "-c", f"import sys; sys.stdout.buffer.write(b'a' * {size})"])
    assert result.exit_code == 0
    assert result.stdout == b"a" * size
    assert max(result.frame_sizes) <= MIB


def test_exec_timeout_kills_the_command(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service()
    result = sandboxes.exec(sid, "echo started; sleep 30", timeout=0.5)
    assert result.exit == {"exit_code": 124, "reason": "timeout"}
    assert result.stdout == b"started\n"


def test_no_state_persists_between_runs_but_files_do(
    sandboxes: Sandboxes, service: Callable[..., str]
) -> None:
    sid = service()
    sandboxes.exec(sid, "export X=1; cd /tmp; echo data > /sandbox/kept.txt")
    result = sandboxes.exec(sid, 'echo "[$X]"; pwd; cat kept.txt')
    assert result.stdout == b"[]\n/sandbox\ndata\n"


def test_finish_commits_what_the_execs_wrote(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, service: Callable[..., str]
) -> None:
    sid = service()
    assert sandboxes.exec(sid, "mkdir -p out && echo result > out/r.txt").exit_code == 0
    final = sandboxes.finish(sid)
    assert final["status"] == "done"
    assert final["status_reason"] == "committed"
    assert final["exit_code"] == 0
    assert final["commit_id"] == head_commit(api, repo_path)
    assert diff(api, repo_path, final["commit_id"]) == {"out/r.txt": "added"}
    assert read_object(api, repo_path, "out/r.txt") == b"result\n"


def test_finish_without_changes_reports_no_changes(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service()
    sandboxes.exec(sid, "echo scratch > /tmp/t")
    final = sandboxes.finish(sid)
    assert (final["status"], final["status_reason"]) == ("done", "no_changes")


def test_cancel_discards_changes(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, service: Callable[..., str]
) -> None:
    sid = service()
    sandboxes.exec(sid, "echo nope > x.txt")
    final = sandboxes.cancel(sid)
    assert (final["status"], final["status_reason"]) == ("cancelled", "cancelled_by_user")
    assert list_objects(api, repo_path) == {}
    assert head_commit(api, repo_path) is None


def test_exec_handshake_refusals(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service()
    with pytest.raises(InvalidStatus) as bad_token:
        connect(sandboxes.exec_url(sid), additional_headers={"Authorization": "Bearer nope"}, open_timeout=10)
    assert bad_token.value.response.status_code == 403
    sandboxes.finish(sid)
    with pytest.raises(InvalidStatus) as finished:
        connect(
            sandboxes.exec_url(sid),
            additional_headers={"Authorization": f"Bearer {sandboxes.token}"},
            open_timeout=10,
        )
    assert finished.value.response.status_code == 410
    unknown = sandboxes.exec_url("00000000-0000-4000-8000-000000000000")
    with pytest.raises(InvalidStatus) as missing:
        connect(unknown, additional_headers={"Authorization": f"Bearer {sandboxes.token}"}, open_timeout=10)
    assert missing.value.response.status_code == 404


def test_an_exec_running_when_the_sandbox_ends_still_gets_exit(
    sandboxes: Sandboxes, service: Callable[..., str]
) -> None:
    sid = service()
    import threading

    results = []
    # "go" arrives once the shell runs: then the exec is surely live when the sandbox is cancelled (a
    # process list would show the command line before anything ran).
    output = threading.Event()
    thread = threading.Thread(
        target=lambda: results.append(sandboxes.exec(sid, "echo go; sleep 60", output=output))
    )
    thread.start()
    assert output.wait(30), "the exec never produced output"
    sandboxes.cancel(sid)
    thread.join(30)
    assert not thread.is_alive()
    assert results[0].stdout == b"go\n"
    assert results[0].exit_code == -1


def test_concurrent_execs_stay_apart(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sid = service()
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda n: sandboxes.exec(sid, f"echo out-{n}; echo err-{n} >&2; exit {n}"), range(8))
        )
    for n, result in enumerate(results):
        assert (result.stdout, result.stderr, result.exit_code) == (
            f"out-{n}\n".encode(),
            f"err-{n}\n".encode(),
            n,
        )
