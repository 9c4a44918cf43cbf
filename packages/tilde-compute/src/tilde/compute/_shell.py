"""Interactive shells: :class:`Shell` runs commands in a service sandbox over the ``/exec`` websocket."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tilde.compute._exec import DEFAULT_COMMAND_LIMIT, ExecSession
from tilde.compute._frames import FRAME_STDOUT, command_argv, command_text
from tilde.compute._output import OutputStream, RunResult
from tilde.compute._process import CommandStream, OutputCallback, Process
from tilde.compute._sandboxes import DEFAULT_WAIT_SECONDS, Sandbox
from tilde.core.errors import CommandError, SandboxError, TildeError

if TYPE_CHECKING:
    from tilde.compute._status import SandboxStatus
    from tilde.core import Client

logger = logging.getLogger(__name__)

Command = str | Sequence[str]

#: How long a clean exit from a shell's ``with`` block waits for the commit (``Shell.finish_timeout``).
FINISH_WAIT_SECONDS = 300.0


class Shell:
    """A service sandbox that runs one command per :meth:`run`, each over a fresh websocket.

    The sandbox exists as soon as the shell is created. Entering the ``with`` block waits until it runs (if
    that fails or is interrupted, Ctrl-C included, the sandbox is cancelled). Leaving the block cleanly
    commits the sandbox's changes and waits, at most `finish_timeout` seconds (300 by default), until the
    sandbox has reached its final state, so the commit is visible once the block has ended; the final status
    is then in `result` (``committed``, ``no_changes`` or ``awaiting_approval``), and a commit that failed
    raises `SandboxError`. When an exception escapes the block the changes are discarded (``cancel``).

    Like ``subprocess.Popen``, a shell that started its sandbox and is garbage-collected while that sandbox
    may still run emits a `ResourceWarning`: use the ``with`` block, or call `finish` or `cancel`.

    No state carries over between commands (``cd``, exported variables): pass ``cwd=``/``env=``.

    Example::

        with repo.shell() as sh:
            sh.run("python3 /sandbox/train.py", check=True)
        print(sh.result.status_reason, sh.commit_id)

    Args:
        client: The API client.
        sandbox: The service sandbox.
        owned: Whether this shell started the sandbox (``repo.shell()`` does); only then does it warn when
            garbage-collected with the sandbox still running.

    Attributes:
        sandbox: The sandbox handle.
        result: The sandbox's final status once a clean exit from the ``with`` block (or `wait`) has seen it.
        finish_timeout: Seconds a clean exit waits for the final status.

    """

    def __init__(self, client: Client, sandbox: Sandbox, *, owned: bool = False):
        self._client = client
        self.sandbox = sandbox
        self._running = False
        self._processes: list[Process] = []
        self._owned = owned
        self._ended = False
        self.result: SandboxStatus | None = None
        self.finish_timeout = FINISH_WAIT_SECONDS

    @property
    def sandbox_id(self) -> str:
        """The sandbox id (also the id of the session holding its changes)."""
        return self.sandbox.id

    @property
    def commit_id(self) -> str | None:
        """The commit the sandbox made, once `result` is known and it committed (else None)."""
        return self.result.commit_id if self.result is not None else None

    def __enter__(self) -> Shell:
        try:
            self.wait_until_running()
        except BaseException:
            # Also on Ctrl-C: a sandbox nobody will use must not keep running.
            self._abandon()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._kill_processes()
        if exc_type is None:
            self.finish()
            self.wait(timeout=self.finish_timeout)
            return
        try:
            self.cancel()
        except TildeError:
            # Keep the caller's exception, not a failure to clean up after it.
            logger.warning("Could not cancel sandbox %s", self.sandbox.id, exc_info=True)

    def _abandon(self) -> None:
        """Cancel the sandbox after a failed start, unless it has ended already (never raises)."""
        last = self.sandbox._last_status
        if last is not None and last.is_terminal:
            self._ended = True
            return
        try:
            self.cancel()
        except Exception:
            # The caller's exception matters more than a failure to clean up after it.
            logger.warning("Could not cancel sandbox %s", self.sandbox.id, exc_info=True)

    def __del__(self, _warn: Any = warnings.warn) -> None:
        # ``_warn`` is bound at definition time: module globals may be gone at interpreter shutdown.
        if not getattr(self, "_owned", False) or self._ended:
            return
        last = self.sandbox._last_status
        if last is not None and last.is_terminal:
            return
        _warn(
            f"shell on sandbox {self.sandbox.id} was garbage-collected while the sandbox may still run; "
            "use it in a with block, or call finish() or cancel()",
            ResourceWarning,
            source=self,
            stacklevel=2,
        )

    def wait_until_running(self, *, timeout: float = DEFAULT_WAIT_SECONDS) -> SandboxStatus:
        """Block until the sandbox runs (``__enter__`` does this for you).

        Args:
            timeout: Seconds to wait at most.

        Returns:
            The ``running`` status.

        Raises:
            SandboxError: The sandbox ended first, or is still starting after ``timeout`` seconds.

        """
        status = self.sandbox.wait_until_running(timeout=timeout)
        self._running = True
        return status

    def _session(
        self,
        command: Command,
        *,
        env: Mapping[str, str] | None,
        cwd: str | None,
        timeout: float | None,
        limit: float | None,
    ) -> ExecSession:
        if not self._running:
            self.wait_until_running()
        return ExecSession(
            self._client,
            self.sandbox._path,
            command_argv(command),
            env=env,
            cwd=cwd,
            timeout=timeout,
            limit=limit,
        )

    def run(
        self,
        command: Command,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | str | None = None,
        check: bool = False,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> RunResult:
        """Run a command and wait for it.

        Args:
            command: A shell command line (run with ``sh -c``) or an argv list (executed directly).
            env: Variables merged over the sandbox environment.
            cwd: The working directory.
            stdin: Bytes (or text, UTF-8 encoded) fed to the command, followed by end-of-file (without
                ``stdin`` the command reads end-of-file at once).
            check: Raise :class:`CommandError` when the exit status is not 0.
            timeout: Stop the command after this many seconds; it then exits with status 124.
            on_stdout: Called with each chunk of standard output as it arrives.
            on_stderr: Called with each chunk of standard error as it arrives.

        Returns:
            The command's separate stdout and stderr, and its exit status.

        Raises:
            CommandError: ``check`` is set and the command failed.
            SandboxError: The command ran longer than 300 s without a ``timeout``, or the connection dropped.

        """
        session = self._session(command, env=env, cwd=cwd, timeout=timeout, limit=DEFAULT_COMMAND_LIMIT)
        stdout, stderr = bytearray(), bytearray()
        try:
            session.open(stdin.encode() if isinstance(stdin, str) else stdin)
            for kind, payload in session.events():
                if kind == FRAME_STDOUT:
                    stdout.extend(payload)
                    if on_stdout is not None:
                        on_stdout(payload)
                else:
                    stderr.extend(payload)
                    if on_stderr is not None:
                        on_stderr(payload)
        finally:
            # Also when a callback raises: dropping the connection stops the command.
            session.close()
        code = session.exit_code if session.exit_code is not None else -1
        result = RunResult(OutputStream(bytes(stdout)), OutputStream(bytes(stderr)), code)
        if check and code != 0:
            text = command_text(command)
            raise CommandError(f"Command '{text}' exited with code {code}", result=result, command=text)
        return result

    def stream(
        self,
        command: Command,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | str | None = None,
        timeout: float | None = None,
    ) -> CommandStream:
        """Start a command and iterate over its output while it runs.

        Example::

            with sh.stream("make") as output:
                for name, chunk in output:
                    print(name, chunk)
            print(output.exit_code)

        Args:
            command: A shell command line or an argv list.
            env: Variables merged over the sandbox environment.
            cwd: The working directory.
            stdin: Bytes (or UTF-8 text) fed to the command, followed by end-of-file.
            timeout: Stop the command after this many seconds (exit status 124).

        Returns:
            An iterable of ``(stream_name, bytes)`` pairs; ``exit_code`` is set when it ends.

        """
        session = self._session(command, env=env, cwd=cwd, timeout=timeout, limit=None)
        session.open(stdin.encode() if isinstance(stdin, str) else stdin)
        return CommandStream(session)

    def spawn(
        self,
        command: Command,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | str | None = None,
        stdin_open: bool = False,
        timeout: float | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> Process:
        """Start a command in the background and return at once.

        The process lives as long as its connection: :meth:`Process.kill` stops it, and so does leaving the
        shell's ``with`` block.

        Args:
            command: A shell command line or an argv list.
            env: Variables merged over the sandbox environment.
            cwd: The working directory.
            stdin: Bytes (or UTF-8 text) sent to the command first.
            stdin_open: Keep stdin open for :meth:`Process.write` (else it closes after ``stdin``).
            timeout: Stop the command after this many seconds (exit status 124).
            on_stdout: Called with each chunk of standard output, from a background thread.
            on_stderr: Called with each chunk of standard error, from a background thread.

        Returns:
            The running process.

        """
        session = self._session(command, env=env, cwd=cwd, timeout=timeout, limit=None)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        session.open(data, keep_stdin_open=stdin_open)
        process = Process(session, command_text(command), on_stdout=on_stdout, on_stderr=on_stderr)
        self._processes = [p for p in self._processes if p.poll() is None] + [process]
        return process

    def _kill_processes(self) -> None:
        processes, self._processes = self._processes, []
        for process in processes:
            process.kill()

    def status(self) -> SandboxStatus:
        """Fetch the sandbox's current status.

        Returns:
            The status.

        """
        return self.sandbox.status()

    def finish(self) -> None:
        """Stop the sandbox and commit its changes; returns without waiting for the commit (see `wait`)."""
        self._ended = True
        self.sandbox.finish()

    def cancel(self) -> None:
        """Stop the sandbox and discard its changes."""
        self._ended = True
        self.sandbox.cancel()

    def wait(self, *, timeout: float = FINISH_WAIT_SECONDS) -> SandboxStatus:
        """Block until the sandbox has reached its final state, and keep that status in `result`.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            The final status: ``done`` with ``status_reason`` ``committed``, ``no_changes`` or
            ``awaiting_approval``.

        Raises:
            SandboxError: The sandbox is still active after ``timeout`` seconds, or it ended without
                committing (the commit failed, or it was cancelled, timed out or lost).

        """
        status = self.sandbox.wait(timeout=timeout)
        self.result = status
        self._ended = True
        if status.state != "done":
            detail = f": {status.error_message}" if status.error_message else ""
            raise SandboxError(
                f"Sandbox {self.sandbox.id} ended {status.state}/{status.status_reason} "
                f"instead of committing{detail}"
            )
        return status

    def __repr__(self) -> str:
        return f"Shell(sandbox={self.sandbox.id!r})"
