"""One command over one ``/exec`` websocket (CONTRACT §7), shared by ``run``, ``stream`` and ``spawn``."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import threading
import time
import weakref
from collections.abc import Generator, Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from tilde.compute._frames import (
    FRAME_EXIT,
    FRAME_STDERR,
    FRAME_STDOUT,
    STDIN_CLOSE,
    launch_frame,
    parse_exit,
    split_frame,
    stdin_frames,
)
from tilde.core.errors import SandboxError, TransportError, api_error_for_status

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

    from tilde.core import Client

#: The exit code reported when a ``timeout`` stopped the command (as coreutils' ``timeout`` does).
TIMEOUT_EXIT_CODE = 124
#: The exit code reported for a process killed from the client side (``Process.kill``): minus SIGKILL.
KILLED_EXIT_CODE = -9
#: Extra seconds the client grants the server to report a timeout itself before giving up on its own.
TIMEOUT_GRACE_SECONDS = 2.0
#: The published client's overall limit for one ``run`` without a timeout.
DEFAULT_COMMAND_LIMIT = 300.0
#: How long one blocking receive waits before re-checking the deadline.
_RECV_SLICE = 30.0
#: Accept larger messages than the 1 MiB a conforming server sends, to be liberal in what we take.
_MAX_MESSAGE_SIZE = 16 * 1024 * 1024

# Open, exit and close of each /exec websocket at DEBUG (never the Authorization header or the command's I/O).
logger = logging.getLogger("tilde.compute.exec")


@functools.lru_cache(maxsize=1)
def _connect_options() -> dict[str, Any]:
    # Frames are small and latency matters more than bandwidth: no per-message compression. Older websockets
    # releases (13, 14) lack some keyword arguments, so pass only what this one knows.
    known = inspect.signature(connect).parameters
    options: dict[str, Any] = {"compression": None, "max_size": _MAX_MESSAGE_SIZE, "open_timeout": 30}
    return {name: value for name, value in options.items() if name in known}


@functools.lru_cache(maxsize=1)
def _connect_takes_proxy() -> bool:
    return "proxy" in inspect.signature(connect).parameters


#: Each client's proxy for its ``/exec`` websockets (None: none), keyed by its websocket base URL.
_PROXIES: weakref.WeakKeyDictionary[Client, dict[str, str | None]] = weakref.WeakKeyDictionary()


def _proxy_options(client: Client) -> dict[str, Any]:
    """Return ``connect``'s ``proxy`` option for the client's websockets, found in the environment once.

    websockets looks the proxy up in the environment on every connection (two scans of ``os.environ``, a
    tenth of a millisecond or more); a client keeps the answer, as httpx reads the proxy environment once
    per client. Releases without proxy support (before 15) get no option.
    """
    if not _connect_takes_proxy():
        return {}
    base = client._ws_base_url
    known = _PROXIES.setdefault(client, {})
    if base not in known:
        from websockets.proxy import get_proxy
        from websockets.uri import parse_uri

        known[base] = get_proxy(parse_uri(base + "/"))
    return {"proxy": known[base]}


class ExecSession:
    """Runs one command in a sandbox over a fresh websocket.

    Call :meth:`open`, then iterate :meth:`events` until it ends; afterwards :attr:`exit_code` and
    :attr:`reason` are set. :meth:`kill` (from any thread) drops the connection, which makes the server
    stop the command.

    Args:
        client: The API client (for the websocket URL and the Authorization header).
        sandbox_path: The sandbox's API path (``R/sandboxes/{id}``).
        argv: The command's argv.
        env: Variables merged over the sandbox environment.
        cwd: The working directory.
        timeout: Seconds after which the command is stopped (server-side, with a client-side guard).
        limit: Seconds after which the client gives up when no ``timeout`` applies (None: never).

    """

    def __init__(
        self,
        client: Client,
        sandbox_path: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        limit: float | None = DEFAULT_COMMAND_LIMIT,
    ):
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")
        self._client = client
        self._url = client._ws_base_url + sandbox_path + "/exec"
        self._launch = launch_frame(argv, env=env, cwd=cwd, timeout=timeout)
        self._timeout = timeout
        self._limit = timeout + TIMEOUT_GRACE_SECONDS if timeout is not None else limit
        self._ws: ClientConnection | None = None
        self._stack = ExitStack()
        self._killed = threading.Event()
        self._close_logged = False
        self.exit_code: int | None = None
        self.reason = ""
        self.error = ""

    def open(self, stdin: bytes | None = None, *, keep_stdin_open: bool = False) -> None:
        """Connect, launch the command and send its standard input.

        Args:
            stdin: Bytes for the command's stdin.
            keep_stdin_open: Leave stdin open after ``stdin`` (for :meth:`send_stdin` later); otherwise
                end-of-file follows, also when there is no ``stdin`` at all.

        Raises:
            APIError: The server refused the handshake (e.g. 410 when the sandbox has finished).
            TransportError: The server could not be reached.

        """
        headers = self._client._auth_headers()
        user_agent = headers.pop("User-Agent", None)
        logger.debug("exec %s: opening", self._url)
        try:
            # Entered as a context manager: recent websockets releases warn about bare connect() calls.
            self._ws = self._stack.enter_context(
                connect(
                    self._url,
                    additional_headers=headers,
                    user_agent_header=user_agent,
                    **_connect_options(),
                    **_proxy_options(self._client),
                )
            )
        except InvalidStatus as exc:
            response = exc.response
            body = response.body.decode("utf-8", "replace") if response.body else ""
            raise api_error_for_status(
                response.status_code,
                message=_error_message(body) or response.reason_phrase,
                method="GET",
                url=self._url,
                response_text=body[:500],
            ) from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise TransportError(f"Could not open {self._url}: {exc}", cause=exc) from exc
        logger.debug("exec %s: open", self._url)
        try:
            self._ws.send(self._launch)
            if stdin is not None:
                for frame in stdin_frames(stdin):
                    self._ws.send(frame)
            if not keep_stdin_open:
                # Without stdin the command gets end-of-file at once, as the published SDK documents ("closed
                # stdin"), rather than a pipe nobody writes to: `cat` must not hang.
                self._ws.send(STDIN_CLOSE)
        except ConnectionClosed:
            # The server may already have answered (e.g. EXIT for a command that could not start);
            # events() reads whatever arrived.
            pass

    def send_stdin(self, data: bytes) -> None:
        """Send more bytes to the command's standard input.

        Args:
            data: The bytes.

        """
        for frame in stdin_frames(data):
            self._connection().send(frame)

    def close_stdin(self) -> None:
        """Signal end-of-file on the command's standard input."""
        self._connection().send(STDIN_CLOSE)

    def _connection(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError("the exec session is not open")
        return self._ws

    def events(self) -> Generator[tuple[int, bytes], None, None]:
        """Yield ``(FRAME_STDOUT | FRAME_STDERR, payload)`` until the command exits.

        Yields:
            Output frames in arrival order.

        Raises:
            SandboxError: The connection dropped before the exit status arrived, or (without ``timeout``) the
                command outlived the session's limit.

        """
        ws = self._connection()
        deadline = time.monotonic() + self._limit if self._limit is not None else None
        try:
            while True:
                wait = _RECV_SLICE
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        self._expire()
                        return
                try:
                    message = ws.recv(timeout=wait)
                except TimeoutError:
                    continue
                except ConnectionClosed as exc:
                    if self._killed.is_set():
                        self.exit_code, self.reason = KILLED_EXIT_CODE, "killed"
                        logger.debug("exec %s: killed by the client", self._url)
                        return
                    logger.debug("exec %s: connection closed before the exit status (%s)", self._url, exc)
                    raise SandboxError(
                        "The /exec connection closed before the command's exit status"
                    ) from exc
                frame = split_frame(message)
                if frame is None:
                    continue
                kind, payload = frame
                if kind in (FRAME_STDOUT, FRAME_STDERR):
                    if payload:
                        yield kind, payload
                elif kind == FRAME_EXIT:
                    self.exit_code, self.reason, self.error = parse_exit(payload)
                    logger.debug(
                        "exec %s: exited with code %s%s",
                        self._url,
                        self.exit_code,
                        f" ({self.reason})" if self.reason else "",
                    )
                    return
                # Unknown frame types are ignored, as the contract asks of clients.
        finally:
            self.close()

    def _expire(self) -> None:
        if self._timeout is None:
            raise SandboxError(f"Command did not finish within {self._limit:g} s")
        # The server did not report the timeout itself in time: closing the socket stops the command.
        logger.debug("exec %s: no exit status within the %g s timeout; stopping it", self._url, self._timeout)
        self.exit_code, self.reason = TIMEOUT_EXIT_CODE, "timeout"

    def kill(self) -> None:
        """Stop the command by dropping the connection (safe from any thread)."""
        self._killed.set()
        self.close()

    def close(self) -> None:
        """Close the websocket (idempotent)."""
        if self._ws is not None:
            if not self._close_logged:
                self._close_logged = True
                logger.debug("exec %s: closed", self._url)
            self._ws.close()
        self._stack.close()


def _error_message(body: str) -> str:
    """Return the ``message`` of a JSON error body, or the body's first 200 characters."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return body[:200]
