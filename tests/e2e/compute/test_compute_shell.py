"""repo.shell(): commands over /exec in a real bubblewrap sandbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tilde.compute import KILLED_EXIT_CODE, TIMEOUT_EXIT_CODE, Repository, Shell
from tilde.core import CommandError

pytestmark = pytest.mark.sandbox


def test_stdout_stderr_and_exit_code_stay_apart(shell: Shell) -> None:
    result = shell.run("printf 'out\\n'; printf 'err\\n' >&2; exit 7")
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"
    assert result.exit_code == 7


def test_argv_commands_run_without_a_shell(shell: Shell) -> None:
    result = shell.run(["printf", "%s|", "a b", "$HOME"])
    assert result.stdout.text() == "a b|$HOME|"


def test_stdin_is_fed_then_closed(shell: Shell) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: more than one STDIN frame
    result = shell.run(["sh", "-c", "wc -c; echo done >&2"], stdin=data + b"x")
    assert result.stdout.text().strip() == str(len(data) + 1)
    assert result.stderr == b"done\n"
    assert shell.run("cat", stdin="héllo").stdout.text() == "héllo"


def test_no_stdin_does_not_block(shell: Shell) -> None:
    assert shell.run("cat").exit_code == 0


def test_env_and_cwd(shell: Shell) -> None:
    shell.run("mkdir -p /sandbox/sub/dir", check=True)
    result = shell.run('echo "$GREETING $(pwd)"', env={"GREETING": "hello"}, cwd="/sandbox/sub/dir")
    assert result.stdout.text() == "hello /sandbox/sub/dir\n"
    # Nothing carries over between runs.
    assert shell.run('echo "[$GREETING]"').stdout.text() == "[]\n"


def test_check_raises_command_error_with_the_result(shell: Shell) -> None:
    with pytest.raises(CommandError) as info:
        shell.run("echo nope >&2; exit 3", check=True)
    assert info.value.result.exit_code == 3
    assert info.value.result.stderr == b"nope\n"
    assert info.value.command == "echo nope >&2; exit 3"


def test_callbacks_receive_output_while_the_command_runs(shell: Shell) -> None:
    # The command waits for a file that only the callback creates (through a second exec): the run can only
    # finish if the first chunk was delivered while the command was still running.
    seen: list[tuple[str, bytes]] = []

    def on_stdout(chunk: bytes) -> None:
        seen.append(("out", chunk))
        if b"waiting" in chunk:
            shell.run("touch /tmp/go", check=True)

    script = "echo waiting; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done >&2"
    result = shell.run(script, timeout=60, on_stdout=on_stdout, on_stderr=lambda c: seen.append(("err", c)))
    assert result.exit_code == 0
    assert seen == [("out", b"waiting\n"), ("err", b"done\n")]


def test_stream_yields_output_before_the_command_ends(shell: Shell) -> None:
    with shell.stream("echo first; sleep 60") as output:
        name, chunk = next(iter(output))
        assert (name, chunk) == ("stdout", b"first\n")
        assert output.exit_code is None
    # Leaving the block early stopped the command.
    assert output.exit_code == KILLED_EXIT_CODE
    with shell.stream(["sh", "-c", "echo a; echo b >&2; exit 4"]) as output:
        chunks = list(output)
    assert sorted(chunks) == [("stderr", b"b\n"), ("stdout", b"a\n")]
    assert output.exit_code == 4


def test_timeout_stops_the_command(shell: Shell) -> None:
    started = time.monotonic()
    result = shell.run("echo begun; sleep 30; echo never", timeout=1)
    assert time.monotonic() - started < 20
    assert result.exit_code == TIMEOUT_EXIT_CODE
    assert result.stdout == b"begun\n"


def _running_commands(shell: Shell) -> str:
    listing = shell.run(
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done", check=True
    )
    return listing.stdout.text()


def test_spawn_wait_and_kill(shell: Shell) -> None:
    job = shell.spawn("echo started; sleep 0.2; echo finished >&2; exit 5")
    result = job.wait(timeout=60)
    assert (result.stdout.read(), result.stderr.read(), result.exit_code) == (b"started\n", b"finished\n", 5)

    ready = threading.Event()
    sleeper = shell.spawn("echo ready; exec sleep 61", on_stdout=lambda chunk: ready.set())
    assert ready.wait(30)
    assert sleeper.poll() is None
    assert sleeper.stdout == b"ready\n"
    assert "sleep 61" in _running_commands(shell)
    sleeper.kill()
    assert sleeper.poll() == KILLED_EXIT_CODE
    # The server kills the process when its connection drops.
    deadline = time.monotonic() + 30
    while "sleep 61" in _running_commands(shell):
        assert time.monotonic() < deadline, "the killed process is still running"
        time.sleep(0.1)


def test_spawn_with_interactive_stdin(shell: Shell) -> None:
    lines: list[bytes] = []
    got = threading.Event()

    def on_stdout(chunk: bytes) -> None:
        lines.append(chunk)
        got.set()

    with shell.spawn(
        'while read line; do echo "got $line"; done; echo eof', stdin_open=True, on_stdout=on_stdout
    ) as proc:
        proc.write(b"one\n")
        assert got.wait(30)
        proc.close_stdin()
        result = proc.wait(timeout=30)
    assert result.stdout == b"got one\neof\n"
    assert result.exit_code == 0


def test_clean_exit_commits_and_exception_cancels(repo: Repository, head: Callable[[], str | None]) -> None:
    with repo.shell() as sh:
        sh.run("mkdir -p /sandbox/out && echo kept > /sandbox/out/kept.txt", check=True)
    final = sh.sandbox.wait(timeout=60)
    assert final.is_committed, final
    assert head() == final.commit_id
    assert repo.commits.get(final.commit_id or "").objects.get("out/kept.txt").read() == b"kept\n"

    class Boom(Exception):
        pass

    def failing() -> None:
        with repo.shell() as doomed:
            doomed.run("echo lost > /sandbox/out/lost.txt", check=True)
            raise Boom

    with pytest.raises(Boom):
        failing()
    cancelled = [s for s in repo.sandboxes.list() if s.id != sh.sandbox_id]
    assert [s.wait(timeout=60).state for s in cancelled] == ["cancelled"]
    assert head() == final.commit_id
