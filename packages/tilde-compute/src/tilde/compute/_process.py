"""Background commands in a shell: :class:`Process` and the live :class:`CommandStream`."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import overload

from tilde.compute._exec import KILLED_EXIT_CODE, ExecSession
from tilde.compute._frames import FRAME_STDOUT
from tilde.compute._output import OutputStream, RunResult
from tilde.core.errors import SandboxError

OutputCallback = Callable[[bytes], object]


class _WaitTimeout(SandboxError, TimeoutError):
    """`Process.wait` ran out of time.

    A `SandboxError` like `Sandbox.wait`'s, and still the builtin ``TimeoutError`` that earlier releases
    raised, so handlers written for either keep working.
    """


class CommandStream:
    """A running command's output as ``(stream_name, bytes)`` pairs, in the order the server sent them.

    ``stream_name`` is ``"stdout"`` or ``"stderr"``. After the iteration ends, :attr:`exit_code` holds the
    command's exit status. Leaving a ``with`` block early (or :meth:`close`) stops the command.

    Args:
        session: An opened exec session.

    """

    def __init__(self, session: ExecSession):
        self._session = session
        self._events = session.events()

    @property
    def exit_code(self) -> int | None:
        """The exit status once the command has ended, else None."""
        return self._session.exit_code

    @property
    def reason(self) -> str:
        """Why the command ended when the server said (e.g. ``"timeout"``), else ``""``."""
        return self._session.reason

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for kind, payload in self._events:
            yield ("stdout" if kind == FRAME_STDOUT else "stderr"), payload

    def close(self) -> None:
        """Stop reading; a command still running is stopped (its exit code becomes ``KILLED_EXIT_CODE``)."""
        running = self._session.exit_code is None
        if running:
            self._session.kill()
        self._events.close()
        self._session.close()
        if running and self._session.exit_code is None:
            self._session.exit_code, self._session.reason = KILLED_EXIT_CODE, "killed"

    def __enter__(self) -> CommandStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.exit_code is None else f"exit_code={self.exit_code}"
        return f"CommandStream({state})"


class Process:
    """A command running in the background of a shell, its websocket served by a thread of its own.

    Output accumulates as it arrives: :attr:`stdout` and :attr:`stderr` return what was received so far.

    Args:
        session: An opened exec session.
        command: The command as text (for ``repr`` and errors).
        on_stdout: Called with each stdout chunk, from the process's thread.
        on_stderr: Called with each stderr chunk, from the process's thread.

    """

    def __init__(
        self,
        session: ExecSession,
        command: str,
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ):
        self._session = session
        self.command = command
        self._on_stdout = on_stdout
        self._on_stderr = on_stderr
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, name=f"tilde-exec {command[:40]}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for kind, payload in self._session.events():
                is_stdout = kind == FRAME_STDOUT
                with self._lock:
                    (self._stdout if is_stdout else self._stderr).extend(payload)
                callback = self._on_stdout if is_stdout else self._on_stderr
                if callback is not None:
                    callback(payload)
        except BaseException as exc:  # re-raised in the caller's thread by wait()
            self._error = exc

    @property
    def stdout(self) -> OutputStream:
        """Standard output received so far."""
        with self._lock:
            return OutputStream(bytes(self._stdout))

    @property
    def stderr(self) -> OutputStream:
        """Standard error received so far."""
        with self._lock:
            return OutputStream(bytes(self._stderr))

    def poll(self) -> int | None:
        """Return the exit status if the process has ended, else None.

        Returns:
            The exit code or None.

        """
        return None if self._thread.is_alive() else self._session.exit_code

    @overload
    def wait(self, *, timeout: float | None = None) -> RunResult: ...

    @overload
    def wait(self, timeout: float | None, /) -> RunResult: ...

    def wait(self, *args: float | None, timeout: float | None = None) -> RunResult:
        """Wait for the process to end.

        ``timeout`` is keyword-only, as for `Sandbox.wait`; passing it positionally still works but emits a
        ``DeprecationWarning``.

        Args:
            *args: The deprecated positional form of ``timeout``.
            timeout: Seconds to wait at most (None: as long as it takes).

        Returns:
            The complete output and exit status.

        Raises:
            SandboxError: The process is still running after ``timeout`` seconds (it keeps running), or the
                connection to the sandbox was lost. The timeout error is also a builtin ``TimeoutError``.

        """
        if args:
            if len(args) > 1:
                raise TypeError(f"wait() takes at most 1 positional argument ({len(args)} given)")
            warnings.warn(
                "Process.wait(timeout) is deprecated: pass it as a keyword, wait(timeout=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            timeout = args[0]
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise _WaitTimeout(f"Process {self.command!r} still running after {timeout:g} s")
        if self._error is not None:
            raise self._error
        code = self._session.exit_code
        return RunResult(self.stdout, self.stderr, code if code is not None else -1)

    def kill(self) -> None:
        """Stop the process (the server kills it when its connection drops) and wait for its thread."""
        if self._thread.is_alive():
            self._session.kill()
        self._thread.join()

    def write(self, data: bytes) -> None:
        """Send bytes to the process's standard input (spawn it with ``stdin_open=True``).

        Args:
            data: The bytes.

        """
        self._session.send_stdin(data)

    def close_stdin(self) -> None:
        """Signal end-of-file on the process's standard input."""
        self._session.close_stdin()

    def __enter__(self) -> Process:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()

    def __repr__(self) -> str:
        code = self.poll()
        state = "running" if code is None and self._thread.is_alive() else f"exit_code={code}"
        return f"Process({self.command!r}, {state})"
