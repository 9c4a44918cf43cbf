"""Connection limits: a client cannot exhaust the server's file descriptors or memory before authenticating.

Everything here acts below the application, on uvicorn's httptools protocol:

- at most ``max_connections`` open connections, and ``max_connections_per_address`` from one client address.
  A new connection beyond a cap first displaces the oldest *idle* connection in its way (one that has not sent
  a complete request header: fresh, trickling, or kept alive between requests); when every connection is busy
  it is answered ``503`` (``too_many_connections``) and closed before anything is read;
- a request's header block must arrive within ``header_timeout`` seconds, counted from the connection's start
  or the end of its previous response (slow-header clients are disconnected), and may hold at most
  ``max_header_bytes`` (a larger one is answered ``431`` and the connection closed);
- a connection is never timed out while a request is in progress: long polls, uploads and WebSocket sessions
  (exec) hold their slot for as long as they last;
- each condition is logged in one line at most once a minute (with the count of occurrences since the last
  line), never per connection; the event loop's own "out of system resource" errors on ``accept()``
  (``EMFILE``, one traceback a second otherwise) are reduced the same way.

`raise_fd_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard limit; `derive_limits` picks caps well below it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tilde.server.access_log import AccessLineWriter, access_line_writer
from tilde.server.config import ServerConfig
from tilde.server.errors import new_request_id

__all__ = [
    "ConnectionGuard",
    "ConnectionLimits",
    "GuardedServer",
    "accept_backlog",
    "derive_limits",
    "raise_fd_limit",
]

logger = logging.getLogger("tilde.server.connections")

#: Most connections derived from the descriptor limit, however high that limit is.
MAX_DERIVED_CONNECTIONS = 16384
#: A client address may always hold this many connections (up to the total), whatever the total.
MIN_PER_ADDRESS = 256
#: Seconds between two log lines about the same condition (a full server, one address at its cap, EMFILE).
LOG_INTERVAL = 60.0
_ACCEPT_ERROR = "socket.accept() out of system resource"


def raise_fd_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _reserve(fd_limit: int) -> int:
    return max(64, fd_limit // 4)


def derive_limits(fd_limit: int) -> tuple[int, int]:
    """Return ``(max_connections, max_connections_per_address)`` for a process allowed ``fd_limit`` files.

    A quarter of the descriptors (at least 64) stays for everything but client connections: databases, blob
    files, sandbox pipes, the worker threads' files, and the connections accepted in one go (`accept_backlog`)
    before the guard sees them.
    """
    total = max(16, min(MAX_DERIVED_CONNECTIONS, fd_limit - _reserve(fd_limit)))
    per_address = max(total // 4, min(MIN_PER_ADDRESS, total))
    return total, per_address


def accept_backlog(fd_limit: int) -> int:
    """Return the listen backlog for a process allowed ``fd_limit`` files.

    The event loop accepts up to this many connections in one go before any of them reaches the guard, so
    it must fit in the descriptors `derive_limits` keeps in reserve.
    """
    return max(16, min(2048, _reserve(fd_limit) // 2))


@dataclass(frozen=True)
class ConnectionLimits:
    """The caps a `ConnectionGuard` enforces.

    Attributes:
        max_connections: Most open client connections.
        max_connections_per_address: Most open connections from one client address (0: no per-address cap).
        header_timeout: Seconds a connection may take to send a complete request header block.
        max_header_bytes: Largest request line plus header block accepted.

    """

    max_connections: int
    max_connections_per_address: int
    header_timeout: float
    max_header_bytes: int

    @classmethod
    def from_config(cls, config: ServerConfig, fd_limit: int) -> ConnectionLimits:
        """Return the limits of ``config``, with the caps it leaves unset derived from ``fd_limit``."""
        total, per_address = derive_limits(fd_limit)
        if config.max_connections is not None:
            total = config.max_connections
            per_address = max(total // 4, min(MIN_PER_ADDRESS, total))
        if config.max_connections_per_address is not None:
            per_address = config.max_connections_per_address
        return cls(
            max_connections=total,
            max_connections_per_address=min(per_address, total),
            header_timeout=config.header_timeout,
            max_header_bytes=config.max_header_bytes,
        )


class _Slot:
    """One admitted connection."""

    __slots__ = ("idle", "peer", "released", "transport")

    def __init__(self, peer: str, transport: asyncio.BaseTransport) -> None:
        self.peer = peer
        self.transport = transport
        self.idle = True
        self.released = False


class _Peer:
    """The connections of one client address."""

    __slots__ = ("count", "idle")

    def __init__(self) -> None:
        self.count = 0
        self.idle: OrderedDict[_Slot, None] = OrderedDict()


class ConnectionGuard:
    """Count connections, displace idle ones at the caps, and log each exhaustion episode once.

    Args:
        limits: The caps.

    """

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        self.refused = 0
        self.displaced = 0
        self._peers: dict[str, _Peer] = {}
        self._idle: OrderedDict[_Slot, None] = OrderedDict()
        self._by_transport: dict[asyncio.BaseTransport, _Slot] = {}
        self._log_state: dict[str, tuple[float, int]] = {}

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Take a slot for a new connection (displacing an idle one at a cap); False: refuse it."""
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, (tuple, list)) and peername else "?"
        record = self._peers.get(peer)
        per_address = self.limits.max_connections_per_address
        if per_address and record is not None and record.count >= per_address:
            self._log(
                f"address {peer}",
                logging.WARNING,
                f"client {peer} reached the limit of {per_address} connections per address; its idle "
                "connections are displaced, the others refused",
            )
            if not self._displace(record.idle):
                self.refused += 1
                return False
        if self.open >= self.limits.max_connections:
            self._log(
                "total",
                logging.WARNING,
                f"connection limit reached ({self.open} open); idle connections are displaced, the others "
                "refused",
            )
            if not self._displace(self._idle):
                self.refused += 1
                return False
        if record is None:
            record = self._peers[peer] = _Peer()
        slot = _Slot(peer, transport)
        record.count += 1
        self.open += 1
        self._by_transport[transport] = slot
        self._idle[slot] = None
        record.idle[slot] = None
        return True

    def _displace(self, idle: OrderedDict[_Slot, None]) -> bool:
        if not idle:
            return False
        slot = next(iter(idle))
        self._release(slot)
        slot.transport.close()
        self.displaced += 1
        return True

    def set_idle(self, transport: asyncio.BaseTransport, idle: bool) -> None:
        """Mark a connection idle (waiting for a request header) or busy (a request in progress)."""
        slot = self._by_transport.get(transport)
        if slot is None or slot.idle == idle:
            return
        slot.idle = idle
        record = self._peers[slot.peer]
        if idle:
            self._idle[slot] = None
            record.idle[slot] = None
        else:
            self._idle.pop(slot, None)
            record.idle.pop(slot, None)

    def release(self, transport: asyncio.BaseTransport) -> None:
        """Free the slot of a closed connection (nothing if it was displaced or refused)."""
        slot = self._by_transport.get(transport)
        if slot is not None:
            self._release(slot)

    def _release(self, slot: _Slot) -> None:
        if slot.released:
            return
        slot.released = True
        del self._by_transport[slot.transport]
        self._idle.pop(slot, None)
        self.open -= 1
        record = self._peers[slot.peer]
        record.idle.pop(slot, None)
        record.count -= 1
        if record.count == 0:
            del self._peers[slot.peer]

    def _log(self, key: str, level: int, message: str) -> None:
        """Log ``message`` unless ``key`` was logged less than `LOG_INTERVAL` ago (then count it)."""
        now = time.monotonic()
        last, repeats = self._log_state.get(key, (-LOG_INTERVAL, 0))
        if now - last < LOG_INTERVAL:
            self._log_state[key] = (last, repeats + 1)
            return
        if len(self._log_state) > 1024:  # forget the addresses not seen for a while
            self._log_state = {k: v for k, v in self._log_state.items() if now - v[0] < LOG_INTERVAL}
        self._log_state[key] = (now, 0)
        suffix = f" ({repeats} more times since the last report)" if repeats else ""
        logger.log(level, "%s%s; reported at most once a minute", message, suffix)

    def loop_exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Log failing ``accept()`` calls (descriptors exhausted) once a minute at most, the rest as usual."""
        if context.get("message") == _ACCEPT_ERROR:
            error = context.get("exception")
            reason = getattr(error, "strerror", None) or error
            self._log(
                "accept",
                logging.ERROR,
                f"cannot accept connections: {reason} ({self.open} open; the server retries every second)",
            )
            return
        loop.default_exception_handler(context)


def _error_bytes(status: int, reason: str, code: str, message: str, extra: str = "") -> bytes:
    rid = new_request_id()
    body = json.dumps({"message": message, "code": code, "request_id": rid}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"x-request-id: {rid}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


_REFUSED = (503, "Service Unavailable", "too_many_connections", "too many open connections; retry later")
_TOO_LARGE = (
    431,
    "Request Header Fields Too Large",
    "header_too_large",
    "the request header block is too large",
)


#: Bodies up to this size are sent in one piece with the response's header block (copying them costs less
#: than a second ``send``); larger ones follow it in their own write.
JOIN_BODY_MAX = 256 * 1024


class _JoinedHeadTransport:
    """What one request's response cycle writes through: its header block goes out with the first body chunk.

    uvicorn writes a response's status line and headers, then each body chunk, each with its own ``send``
    system call: two per small response, where the second one is most of the cost of a small request on the
    loopback. The header block is held here until the next write (normally the body, sent in the same turn
    of the event loop) and sent joined to it; a response whose body takes longer (a stream, a long poll) gets
    its header block flushed on the loop's next turn all the same, and closing flushes first.
    """

    __slots__ = ("_access", "_flush_handle", "_held", "_loop", "_scope", "_started", "transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        access: AccessLineWriter | None = None,
        scope: Any = None,
    ) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._started = False
        # With an `AccessLineWriter` (uvicorn's own access logging is then off for the connection), the
        # response's access line is queued when its final header block (not a ``100 Continue``) passes.
        self._access = access
        self._scope = scope

    def write(self, data: bytes) -> None:
        """Hold the first write (the header block); send any later one joined to what is held."""
        if self._access is not None and data.startswith(b"HTTP/1.") and data[9:10] != b"1":
            # uvicorn writes a status line and its headers in one piece.
            self._access.log(self._scope, int(data[9:12]))
            self._access = None
        held = self._held
        if held is not None:
            self._held = None
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None
            if len(data) <= JOIN_BODY_MAX:
                self.transport.write(held + data)
                return
            self.transport.write(held)
        elif not self._started:
            self._started = True
            self._held = data
            self._flush_handle = self._loop.call_soon(self.flush)
            return
        self.transport.write(data)

    def flush(self) -> None:
        """Send what is held, if anything."""
        self._flush_handle = None
        held, self._held = self._held, None
        if held is not None and not self.transport.is_closing():
            self.transport.write(held)

    def is_closing(self) -> bool:
        """Tell whether the connection is closing."""
        return self.transport.is_closing()

    def close(self) -> None:
        """Flush, then close the connection."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def guarded_protocol(guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """Return uvicorn's httptools protocol class bound to ``guard`` (for ``uvicorn.Config(http=...)``)."""
    limits = guard.limits
    ws_classes: dict[type[Any], type[Any]] = {}

    def guarded_ws(base: type[Any]) -> type[Any]:
        if base not in ws_classes:

            class GuardedWebSocket(base):  # type: ignore[misc]
                _guarded_transport: asyncio.BaseTransport | None = None

                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    self._guarded_transport = transport
                    super().connection_made(transport)

                def connection_lost(self, exc: Exception | None) -> None:
                    try:
                        super().connection_lost(exc)
                    finally:
                        if self._guarded_transport is not None:
                            guard.release(self._guarded_transport)

            ws_classes[base] = GuardedWebSocket
        return ws_classes[base]

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol under the guard's caps and timeouts."""

        _admitted = False
        _awaiting_header = True
        _header_bytes = 0
        _header_timer: asyncio.TimerHandle | None = None
        _header_deadline: float | None = None

        _access_writer: AccessLineWriter | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.access_log:
                # The plain access line is written by the response's transport (`_JoinedHeadTransport`).
                self._access_writer = access_line_writer()
                self.access_log = self._access_writer is None
            if self.ws_protocol_class is not None:
                self.ws_protocol_class = guarded_ws(self.ws_protocol_class)
            if not guard.admit(transport):
                self._reject(_REFUSED, "retry-after: 1\r\n")
                return
            self._admitted = True
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._drop_header_timer()
            if self._admitted:
                guard.release(self.transport)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._awaiting_header:
                self._header_bytes += len(data)
            super().data_received(data)
            if (
                self._awaiting_header
                and self._header_bytes > limits.max_header_bytes
                and not self.transport.is_closing()
            ):
                self._reject(_TOO_LARGE)

        def on_headers_complete(self) -> None:
            self._awaiting_header = False
            self._header_bytes = 0
            self._cancel_header_timer()
            guard.set_idle(self.transport, False)
            previous = self.cycle
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not None and cycle is not previous:
                # A new response cycle (not an upgrade): its header block goes out with its body.
                cycle.transport = _JoinedHeadTransport(  # type: ignore[assignment]
                    self.transport, self.loop, self._access_writer, cycle.scope
                )

        def on_message_complete(self) -> None:
            super().on_message_complete()
            # What follows is the next request's header (pipelined or after the response).
            self._awaiting_header = True
            self._header_bytes = 0

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.timeout_keep_alive_task is not None:  # idle until the next request
                guard.set_idle(self.transport, True)
                self._arm_header_timer()

        # One timer per connection, not one per request: arming sets a deadline (and schedules the timer only
        # when none is pending), a complete header block clears it, and the timer, when it fires, closes the
        # connection only if a deadline is set and past; a later deadline schedules it again.

        def _arm_header_timer(self) -> None:
            self._header_deadline = deadline = self.loop.time() + limits.header_timeout
            if self._header_timer is None:
                self._header_timer = self.loop.call_at(deadline, self._header_timed_out)

        def _cancel_header_timer(self) -> None:
            self._header_deadline = None

        def _drop_header_timer(self) -> None:
            self._header_deadline = None
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timed_out(self) -> None:
            self._header_timer = None
            deadline = self._header_deadline
            if deadline is None:  # a request is in progress: its response arms a new deadline
                return
            if self.loop.time() < deadline:  # re-armed since this timer was scheduled
                self._header_timer = self.loop.call_at(deadline, self._header_timed_out)
                return
            # No complete header block came in time.
            if not self.transport.is_closing():
                self.transport.close()

        def _reject(self, error: tuple[int, str, str, str], extra: str = "") -> None:
            self._drop_header_timer()
            self.transport.write(_error_bytes(*error, extra))
            self.transport.close()

    return GuardedHttpToolsProtocol


class GuardedServer(uvicorn.Server):
    """A uvicorn server whose event loop reports descriptor exhaustion through the guard (once per episode).

    Args:
        config: uvicorn's settings (see `uvicorn_config`).
        guard: The connection guard.

    """

    def __init__(self, config: uvicorn.Config, guard: ConnectionGuard) -> None:
        super().__init__(config)
        self.guard = guard

    async def serve(self, sockets: list[Any] | None = None) -> None:
        """Serve until told to stop, with the guard's handler for the loop's accept errors."""
        asyncio.get_running_loop().set_exception_handler(self.guard.loop_exception_handler)
        await super().serve(sockets)


def make_server(app: Any, config: ServerConfig, **uvicorn_options: Any) -> GuardedServer:
    """Return a `GuardedServer` for ``app`` under the limits of ``config``.

    Raises the descriptor limit first (`raise_fd_limit`); caps ``config`` leaves unset are derived from it.

    Args:
        app: The ASGI application.
        config: Server settings (connection caps and timeouts).
        **uvicorn_options: More ``uvicorn.Config`` arguments (``log_level``, ``access_log``, ``host``...).

    """
    fd_limit = raise_fd_limit()
    guard = ConnectionGuard(ConnectionLimits.from_config(config, fd_limit))
    uv_config = uvicorn.Config(
        app,
        http=guarded_protocol(guard),
        loop="asyncio",
        backlog=accept_backlog(fd_limit),
        # uvicorn annotates whole seconds but only hands the value to loop.call_later.
        timeout_keep_alive=config.keep_alive_timeout,  # type: ignore[arg-type]
        **uvicorn_options,
    )
    return GuardedServer(uv_config, guard)
