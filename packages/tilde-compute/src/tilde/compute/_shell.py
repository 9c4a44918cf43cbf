"""Interactive shells: :class:`Shell` runs commands in a service sandbox over the ``/exec`` websocket."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from tilde.compute._exec import DEFAULT_COMMAND_LIMIT, ExecSession
from tilde.compute._frames import FRAME_STDOUT, command_argv, command_text
from tilde.compute._output import OutputStream, RunResult
from tilde.compute._process import CommandStream, OutputCallback, Process
from tilde.compute._sandboxes import DEFAULT_WAIT_SECONDS, Sandbox
from tilde.core.errors import CommandError, TildeError

if TYPE_CHECKING:
    from tilde.compute._status import SandboxStatus
    from tilde.core import Client

logger = logging.getLogger(__name__)

Command = str | Sequence[str]


class Shell:
    """A service sandbox that runs one command per :meth:`run`, each over a fresh websocket.

    The sandbox exists as soon as the shell is created. Entering the ``with`` block waits until it runs;
    leaving it commits the sandbox's changes (``finish``) or, when an exception escapes, discards them
    (``cancel``). No state carries over between commands (``cd``, exported variables): pass ``cwd=``/``env=``.

    Args:
        client: The API client.
        sandbox: The service sandbox.

    """

    def __init__(self, client: Client, sandbox: Sandbox):
        self._client = client
        self.sandbox = sandbox
        self._running = False
        self._processes: list[Process] = []

    @property
    def sandbox_id(self) -> str:
        """The sandbox id (also the id of the session holding its changes)."""
        return self.sandbox.id

    def __enter__(self) -> Shell:
        self.wait_until_running()
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
            return
        try:
            self.cancel()
        except TildeError:
            # Keep the caller's exception, not a failure to clean up after it.
            logger.warning("Could not cancel sandbox %s", self.sandbox.id, exc_info=True)

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
        """Stop the sandbox and commit its changes; returns without waiting for the commit."""
        self.sandbox.finish()

    def cancel(self) -> None:
        """Stop the sandbox and discard its changes."""
        self.sandbox.cancel()

    def __repr__(self) -> str:
        return f"Shell(sandbox={self.sandbox.id!r})"
