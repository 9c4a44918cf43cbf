"""``tilde exec`` and ``tilde shell``: run commands in a sandbox on a repository, with live output.

Both start a *service* sandbox and run each command over its ``/exec`` websocket
(`tilde.compute.Shell.stream`), so output appears as the command writes it, stdout to stdout and stderr to
stderr. Ending the sandbox with ``finish`` commits what the commands changed under the mountpoint; ``cancel``
discards it. The outcome (commit id, no changes, awaiting approval, rolled back) is reported on stderr.
"""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, TextIO

import click

from tilde.cli._runtime import REPOSITORY, fail, info, repository, stderr_binary, stdout_binary

if TYPE_CHECKING:
    from tilde.compute import Shell

__all__ = ["exec_command", "shell"]

#: How long to wait for the sandbox's final state (its commit) after ``finish``.
_FINAL_STATE_SECONDS = 300.0
#: Extra lifetime granted to the sandbox over ``--timeout``, so the command's own timeout fires first.
_SANDBOX_MARGIN_SECONDS = 60


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str] | None:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not of the form KEY=VALUE", param_hint="--env")
        env[key] = value
    return env or None


def _exit_status(code: int | None) -> int:
    """Map a command's exit code to a process exit status (signals as 128 + n, like a shell)."""
    if code is None:
        return 1
    if code < 0:
        return min(128 - code, 255)
    return code if code <= 255 else 1


def _stream(
    sh: Shell, command: str | list[str], *, cwd: str | None = None, timeout: float | None = None
) -> int:
    """Run one command, copying its output to our stdout/stderr as it arrives; return its exit code."""
    out = stdout_binary()
    err = stderr_binary()
    with sh.stream(command, cwd=cwd, timeout=timeout) as output:
        for name, chunk in output:
            target = out if name == "stdout" else err
            target.write(chunk)
            target.flush()
    return _exit_status(output.exit_code)


def _finish_and_report(sh: Shell, message: str | None = None) -> bool:
    """Commit the sandbox's changes, wait for the outcome and say it on stderr; False when it failed."""
    if message is None:
        sh.finish()
    else:
        # The commit message rides on the finish request; a server that names sandbox commits itself ignores
        # it, which is reported below rather than silently dropped.
        sh.sandbox._client._request("POST", f"{sh.sandbox._path}/finish", json={"message": message})
    status = sh.sandbox.wait(timeout=_FINAL_STATE_SECONDS)
    if status.is_committed:
        info(f"Committed the sandbox's changes in commit {status.commit_id}")
        if message is not None and status.commit_id:
            _check_message(sh, status.commit_id, message)
    elif status.has_no_changes:
        info("No changes to commit.")
    elif status.is_awaiting_approval:
        info(f"The sandbox's changes await approval at {status.web_url}")
    else:
        detail = f": {status.error_message}" if status.error_message else ""
        info(f"The sandbox ended {status.state}/{status.status_reason}{detail}; nothing was committed")
        return False
    return True


def _check_message(sh: Shell, commit_id: str, message: str) -> None:
    from tilde.data import Commits

    sandbox = sh.sandbox
    commit = Commits(sandbox._client, sandbox._org, sandbox._repo).get(commit_id)
    if commit.message != message:
        info(f"Note: this server names sandbox commits itself; the commit's message is {commit.message!r}")


def _cancel_quietly(sh: Shell) -> None:
    from tilde.core.errors import TildeError

    try:
        sh.cancel()
    except TildeError:
        # Already ended (e.g. timed out): there is nothing left to discard.
        pass


# Options may come before or after ORG/REPO; everything after `--` belongs to the command, and unknown options
# (e.g. `ls -la` without `--`) are passed through to it rather than refused.
@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("repo", type=REPOSITORY, metavar="ORG/REPO")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--image", default=None, help="The sandbox image (default: TILDE_DEFAULT_SANDBOX_IMAGE or ubuntu:22.04)."
)
@click.option(
    "--env", "env_pairs", multiple=True, metavar="KEY=VALUE", help="An environment variable (repeatable)."
)
@click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Stop the command after this many seconds (exit status 124).",
)
@click.option(
    "-m", "--message", default=None, help="The commit message (servers that name sandbox commits say so)."
)
@click.pass_context
def exec_command(
    ctx: click.Context,
    repo: tuple[str, str],
    command: tuple[str, ...],
    image: str | None,
    env_pairs: tuple[str, ...],
    timeout: int | None,
    message: str | None,
) -> None:
    """Run one command in a new sandbox on the repository, streaming its output live.

    The repository is mounted at /sandbox. When the command succeeds its changes are committed; when it
    fails they are rolled back. Exits with the command's exit status; where the changes went is printed on
    stderr. Put the command after --; it runs without a shell (use sh -c for pipes).

    \b
    Examples:
      tilde exec acme/data -- ls -la /sandbox
      tilde exec acme/data --image python:3.12 --env MODE=fast -- python /sandbox/train.py
      tilde exec acme/data -- sh -c 'wc -l /sandbox/*.csv > /sandbox/counts.txt'
    """  # noqa: D301 - click keeps lines after \b as written
    env = _parse_env(env_pairs)
    lifetime = timeout + _SANDBOX_MARGIN_SECONDS if timeout is not None else None
    sh = repository(repo).shell(image=image, env=env, timeout=lifetime)
    try:
        sh.wait_until_running()
        status = _stream(sh, list(command), timeout=timeout)
    except KeyboardInterrupt:
        _cancel_quietly(sh)
        info("Interrupted; the sandbox's changes were rolled back.")
        ctx.exit(130)
    except BaseException:
        _cancel_quietly(sh)
        raise
    if status != 0:
        _cancel_quietly(sh)
        info(f"The command exited with status {status}; its changes were rolled back.")
        ctx.exit(status)
    if not _finish_and_report(sh, message):
        ctx.exit(1)


_EXIT_WORDS = frozenset({"exit", "quit", "logout"})


def _read_eval_loop(sh: Shell, banner: str) -> bool:
    """Run stdin's lines in the shell until ``exit`` or end of input; True when Ctrl-C twice asked to discard.

    Ctrl-C can land anywhere, even while the banner or the hint after a first Ctrl-C is being written, or just
    after: so everything after the sandbox runs, those messages included, happens inside the one handler that
    counts interrupts (a second Ctrl-C right after the hint once escaped from the loop's jump back).
    """
    stdin = sys.stdin
    interactive = stdin.isatty()
    cwd: str | None = None
    interrupts = 0
    pending = banner
    while True:
        try:
            if pending:
                message, pending = pending, ""
                info(message)
            line = _next_line(stdin, interactive)
            command = line.strip()
            if not line or command in _EXIT_WORDS:
                return False
            if command == "cd" or command.startswith("cd "):
                cwd = _change_directory(sh, command, cwd)
            elif command:
                _stream(sh, command, cwd=cwd)
            interrupts = 0
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts >= 2:
                return True
            pending = "\n(Ctrl-C again to discard the changes and leave; `exit` commits.)"


def _next_line(stdin: TextIO, interactive: bool) -> str:
    """Read one line (``""`` at end of input); on a terminal with a prompt and line editing."""
    if not interactive:
        return stdin.readline()
    import readline  # noqa: F401 - importing it gives input() history and line editing

    try:
        return input("tilde> ") + "\n"
    except EOFError:
        return ""


def _change_directory(sh: Shell, line: str, cwd: str | None) -> str | None:
    """Handle ``cd DIR`` here: every line is its own process, so the shell keeps the directory for it."""
    words = shlex.split(line)
    target = words[1] if len(words) > 1 else "/sandbox"
    result = sh.run(["sh", "-c", 'cd "$1" && pwd', "cd", target], cwd=cwd)
    if result.exit_code != 0:
        stderr_binary().write(result.stderr.read())
        return cwd
    return result.stdout.text().strip() or cwd


@click.command()
@click.argument("repo", type=REPOSITORY, metavar="ORG/REPO")
@click.option(
    "--image", default=None, help="The sandbox image (default: TILDE_DEFAULT_SANDBOX_IMAGE or ubuntu:22.04)."
)
@click.option(
    "--env", "env_pairs", multiple=True, metavar="KEY=VALUE", help="An environment variable (repeatable)."
)
@click.option("--rollback", is_flag=True, help="Discard the changes at the end instead of committing them.")
@click.pass_context
def shell(
    ctx: click.Context, repo: tuple[str, str], image: str | None, env_pairs: tuple[str, ...], rollback: bool
) -> None:
    """Run commands in a sandbox on the repository, one line at a time, with live output.

    Each line runs with sh -c in the sandbox (the repository is at /sandbox); `cd DIR` is remembered between
    lines. `exit` or Ctrl-D commits the changes (unless --rollback); Ctrl-C stops the running command, and
    Ctrl-C twice in a row discards the changes and leaves.

    \b
    Examples:
      tilde shell acme/data
      tilde shell acme/data --image python:3.12 --rollback
      printf 'echo hi > /sandbox/hi.txt\\nexit\\n' | tilde shell acme/data
    """  # noqa: D301 - click keeps lines after \b as written
    env = _parse_env(env_pairs)
    sh = repository(repo).shell(image=image, env=env)
    try:
        sh.wait_until_running()
        banner = (
            f"Sandbox {sh.sandbox_id} is running. `exit` or Ctrl-D "
            + ("discards" if rollback else "commits")
            + "; Ctrl-C twice discards."
        )
        if _read_eval_loop(sh, banner):
            rollback = True
    except BaseException:
        _cancel_quietly(sh)
        raise
    if rollback:
        _cancel_quietly(sh)
        info("Discarded the sandbox's changes.")
        return
    if not _finish_and_report(sh):
        fail("the sandbox's changes could not be committed")
