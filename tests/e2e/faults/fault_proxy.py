"""A small HTTP/1.1 proxy that injects faults between the SDK and a real tilde-server.

It sits on the whole path: the server's ``public_url`` is the proxy's address, so API calls and the presigned
upload URLs the server hands out both go through it. Each request is parsed (request line, headers, body by
``Content-Length`` or chunked) and a `FaultPlan` decides its fate:

- ``pass``: forwarded to the server on a fresh upstream connection, the response relayed back.
- ``reset``: the first ``fraction`` of the body is forwarded, then both connections are reset (RST): the
  client sees a dropped connection, the server a client that went away mid-body.
- ``unavailable``: the body is read and dropped, nothing reaches the server, and the client gets a 503 with
  ``Retry-After`` (what an overloaded front end answers).
- ``cut``: forwarded, and the connection is closed after ``cut_after`` bytes of the response body (the client
  receives exactly those bytes, then an early end of the body).
- ``delay``: forwarded after a pause of ``seconds``.
- ``tamper``: forwarded with the URL's ``signature`` altered (the upload target refuses it with a 403).
- ``lose_response``: forwarded and answered by the server, but the client is reset before it sees a byte
  of the answer (the case that makes retrying a non-idempotent request dangerous).

Every request is recorded (method, path, query, decision) so tests can check what reached the server.
The event loop runs in a thread of its own; `FaultProxy` is a context manager.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

_RETRY_AFTER = "1"
_UNAVAILABLE_BODY = b'{"message":"injected: try again later","code":"unavailable","request_id":"req-proxy"}'
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Decision:
    """What to do with one request (see the module docstring)."""

    kind: str = "pass"
    fraction: float = 0.5
    cut_after: int = 0
    seconds: float = 0.0


PASS = Decision()


@dataclass
class Record:
    """One request as the proxy saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    decision: Decision
    headers: dict[str, str] = field(default_factory=dict)
    arrived: float = field(default_factory=time.monotonic)

    @property
    def part_number(self) -> int | None:
        """The part number of a presigned part PUT (its URL's ``part``), else None."""
        values = self.query.get("part")
        return int(values[0]) if values and self.path.startswith("/uploads/") else None


Plan = Callable[[str, str, dict[str, list[str]], dict[str, str]], Decision]


class FaultProxy:
    """Listen on a loopback port and relay to ``upstream`` (set with `connect` once the server runs).

    Args:
        plan: Decides each request's fate from ``(method, path, query, headers)``; ``pass`` everything by
            default. Replace it at any time (``proxy.plan = ...``).

    """

    def __init__(self, plan: Plan | None = None) -> None:
        self.plan: Plan = plan or (lambda method, path, query, headers: PASS)
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._upstream: tuple[str, int] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def connect(self, host: str, port: int) -> None:
        """Relay to ``host:port`` from now on."""
        self._upstream = (host, port)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def matching(self, predicate: Callable[[Record], bool]) -> list[Record]:
        """The recorded requests ``predicate`` accepts, in arrival order."""
        with self._lock:
            return [record for record in self.records if predicate(record)]

    # -- one client connection ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            _close(writer)

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Handle one request; False when the client connection is finished."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        method, target, headers = _parse_head(head)
        split = urlsplit(target)
        query = parse_qs(split.query)
        decision = self.plan(method, split.path, query, headers)
        with self._lock:
            self.records.append(Record(method, split.path, query, decision, headers))
        body = _body_reader(reader, headers)
        if decision.kind == "unavailable":
            async for _ in body:
                pass
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                + f"Retry-After: {_RETRY_AFTER}\r\nContent-Length: {len(_UNAVAILABLE_BODY)}\r\n\r\n".encode()
                + _UNAVAILABLE_BODY
            )
            await writer.drain()
            return True
        if decision.kind == "delay":
            await asyncio.sleep(decision.seconds)
        if decision.kind == "tamper":
            head = head.replace(b"signature=", b"signature=00", 1)
        assert self._upstream is not None, "connect() the proxy to the server first"
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        try:
            up_writer.write(head)
            limit = None
            if decision.kind == "reset":
                length = int(headers.get("content-length", "0") or 0)
                limit = int(length * decision.fraction)
            sent = 0
            async for chunk in body:
                if limit is not None and sent + len(chunk) >= limit:
                    up_writer.write(chunk[: max(0, limit - sent)])
                    await up_writer.drain()
                    _reset(up_writer)
                    _reset(writer)
                    return False
                up_writer.write(chunk)
                sent += len(chunk)
                await up_writer.drain()
            if limit is not None:
                _reset(up_writer)
                _reset(writer)
                return False
            return await self._relay_response(method, decision, up_reader, writer)
        finally:
            _close(up_writer)

    async def _relay_response(
        self,
        method: str,
        decision: Decision,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        head = await up_reader.readuntil(b"\r\n\r\n")
        status_line, _, _ = head.partition(b"\r\n")
        status = int(status_line.split()[1])
        _, _, headers = _parse_head(head, response=True)
        if decision.kind == "lose_response":
            # The server has done the work; the client never learns the outcome.
            async for _ in _response_body(up_reader, headers, method, status):
                pass
            _reset(writer)
            return False
        writer.write(head)
        relayed = 0
        async for chunk in _response_body(up_reader, headers, method, status):
            if decision.kind == "cut" and relayed + len(chunk) > decision.cut_after:
                writer.write(chunk[: decision.cut_after - relayed])
                await writer.drain()
                return False  # closed in an orderly way: every byte sent arrives, then the end
            writer.write(chunk)
            relayed += len(chunk)
            await writer.drain()
        await writer.drain()
        return headers.get("connection", "").lower() != "close"


def _parse_head(head: bytes, *, response: bool = False) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if response:
        return "", "", headers
    return first[0], first[1], headers


async def _body_reader(reader: asyncio.StreamReader, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """Yield a request body's raw bytes (chunked framing kept as it is)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        async for piece in _chunked(reader):
            yield piece
        return
    remaining = int(headers.get("content-length", "0") or 0)
    while remaining > 0:
        chunk = await reader.read(min(_CHUNK, remaining))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", remaining)
        remaining -= len(chunk)
        yield chunk


async def _response_body(  # type: ignore[no-untyped-def]
    reader: asyncio.StreamReader, headers: dict[str, str], method: str, status: int
):
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return
    if headers.get("transfer-encoding", "").lower() == "chunked":
        async for piece in _chunked(reader):
            yield piece
        return
    if "content-length" in headers:
        async for piece in _body_reader(reader, headers):
            yield piece
        return
    while chunk := await reader.read(_CHUNK):
        yield chunk


async def _chunked(reader: asyncio.StreamReader):  # type: ignore[no-untyped-def]
    while True:
        size_line = await reader.readuntil(b"\r\n")
        yield size_line
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:
                trailer = await reader.readuntil(b"\r\n")
                yield trailer
                if trailer == b"\r\n":
                    return
        remaining = size + 2
        while remaining > 0:
            chunk = await reader.read(min(_CHUNK, remaining))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", remaining)
            remaining -= len(chunk)
            yield chunk


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def _close(writer: asyncio.StreamWriter) -> None:
    if not writer.transport.is_closing():
        writer.transport.close()


def random_plan(
    seed: int,
    *,
    part_resets: float = 0.0,
    burst_every: int = 0,
    burst_length: int = 0,
    retryable: Callable[[str, dict[str, str]], bool] | None = None,
) -> Plan:
    """A seeded plan: resets of part PUTs at random, and bursts of 503 on requests the client may retry.

    Args:
        seed: For the random choices (a failing run can be replayed).
        part_resets: Probability that a part PUT is reset half-way.
        burst_every: Start a burst of 503s at every n-th retry-safe request (0: never).
        burst_length: How many consecutive retry-safe requests a burst answers with 503.
        retryable: Whether a request may get a 503, from its method and headers (default: GET, HEAD, PUT
            and DELETE, the methods the SDK retries).

    """
    rng = random.Random(seed)
    lock = threading.Lock()
    state = {"seen": 0, "burst": 0}
    safe = retryable or (lambda method, headers: method in ("GET", "HEAD", "PUT", "DELETE"))

    def plan(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Decision:
        with lock:
            if path.startswith("/uploads/") and "part" in query and rng.random() < part_resets:
                return Decision("reset", fraction=rng.uniform(0.1, 0.9))
            if burst_every and safe(method, headers):
                if state["burst"] > 0:
                    state["burst"] -= 1
                    return Decision("unavailable")
                state["seen"] += 1
                if state["seen"] % burst_every == 0:
                    state["burst"] = burst_length - 1
                    return Decision("unavailable")
            return PASS

    return plan
