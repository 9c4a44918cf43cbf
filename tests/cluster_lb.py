"""A small HTTP/1.1 load balancer for the cluster tests: every request goes to a random live replica.

Real load balancers spread requests, not connections, so a client's keep-alive connection must be able to see
a different replica on each request; this one does exactly that, which is what makes the suites run on the
cluster (`tests/cluster.py`) prove that any replica can serve any request. It:

- parses each request head and body with h11 (bodies by ``Content-Length`` or chunked), keeping the client's
  connection alive while each request goes to a replica picked at random over pooled backend connections;
- streams the response back as it arrives (long polls, chunked bodies, large downloads), answering ``502``
  with the contract's error body when a replica fails before its response starts;
- pipes a WebSocket upgrade (``/exec``) both ways to one replica;
- skips a replica that refuses connections (killed or restarting) for a short while;
- counts the requests and the bytes it sent each replica, answered as JSON on ``GET /_balancer/stats``
  (``{"backends": [{"url", "requests", "bytes_sent"}]}``), so a test can tell what reached each replica.

Run it as a script (`tests/cluster.py` does, in its own process so it never competes with the test process for
the interpreter lock): ``python cluster_lb.py --port 0 --backend http://127.0.0.1:8901 …``. It prints
``listening on PORT`` once it accepts connections and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

READ_SIZE = 256 * 1024
MAX_HEAD_BYTES = 128 * 1024
#: Backend connections idle longer than this are closed rather than reused: well under the replicas'
#: keep-alive timeout, so a reused connection is never one the replica is closing at the same moment.
POOL_IDLE_SECONDS = 2.0
#: How long a replica that refused a connection is left out of the draw.
DOWN_SECONDS = 1.0
CONNECT_TIMEOUT = 10.0
#: Answered by the balancer itself: what it sent each replica.
STATS_PATH = b"/_balancer/stats"
#: Request and response headers that describe one hop, not the message (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"proxy-authorization"}
)


class BackendFailed(Exception):
    """A replica failed (refused, reset or closed) before its response started."""


@dataclass
class _BackendConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: h11.Connection
    idle_since: float = 0.0
    backend: Backend | None = None

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            if self.backend is not None:
                self.backend.bytes_sent += len(data)
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(READ_SIZE)
                self.conn.receive_data(data)
                continue
            return event

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass
class Backend:
    """One replica: where it listens, its idle connections, and until when it is left out."""

    host: str
    port: int
    idle: list[_BackendConnection] = field(default_factory=list)
    down_until: float = 0.0
    requests: int = 0
    #: Bytes of request heads and bodies sent to this replica (piped websocket bytes not included).
    bytes_sent: int = 0

    async def connection(self) -> tuple[_BackendConnection, bool]:
        """An idle pooled connection (``reused`` True) or a new one."""
        now = time.monotonic()
        while self.idle:
            pooled = self.idle.pop()
            if now - pooled.idle_since < POOL_IDLE_SECONDS and not pooled.reader.at_eof():
                return pooled, True
            pooled.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=MAX_HEAD_BYTES), CONNECT_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError) as error:
            self.down_until = time.monotonic() + DOWN_SECONDS
            raise BackendFailed(f"cannot connect to {self.host}:{self.port}: {error}") from error
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        return _BackendConnection(reader, writer, conn, backend=self), False

    def release(self, backend_conn: _BackendConnection) -> None:
        """Pool the connection when both sides finished cleanly, else close it."""
        conn = backend_conn.conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            backend_conn.idle_since = time.monotonic()
            self.idle.append(backend_conn)
        else:
            backend_conn.close()


class LoadBalancer:
    """Spread each request over ``backends`` at random (see the module docstring)."""

    def __init__(self, backends: Sequence[str]) -> None:
        self.backends = []
        for url in backends:
            parts = urlsplit(url)
            if not parts.hostname or not parts.port:
                raise ValueError(f"backend URL needs a host and port: {url!r}")
            self.backends.append(Backend(parts.hostname, parts.port))

    def close_idle(self) -> None:
        """Close every pooled backend connection."""
        for backend in self.backends:
            while backend.idle:
                backend.idle.pop().close()

    def _candidates(self) -> list[Backend]:
        now = time.monotonic()
        live = [backend for backend in self.backends if backend.down_until <= now]
        random.shuffle(live)
        down = [backend for backend in self.backends if backend.down_until > now]
        return live + down  # a replica marked down is still tried when no other is left

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection until it closes."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = _ClientConnection(reader, writer)
        try:
            while await self._one_request(client):
                client.conn.start_next_cycle()
                client.body_read = client.body_done = False
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    async def _one_request(self, client: _ClientConnection) -> bool:
        """Forward one request; True when the client connection can carry another."""
        event = await client.next_event()
        if not isinstance(event, h11.Request):
            return False
        if event.target == STATS_PATH:
            stats = [
                {"url": f"http://{b.host}:{b.port}", "requests": b.requests, "bytes_sent": b.bytes_sent}
                for b in self.backends
            ]
            await client.send_json(200, {"backends": stats})
            return False
        upgrade = any(name == b"upgrade" for name, _ in event.headers)
        headers = [(name, value) for name, value in event.headers if name not in HOP_BY_HOP]
        peer = client.writer.get_extra_info("peername")
        if peer:
            headers.append((b"x-forwarded-for", str(peer[0]).encode()))
        if upgrade:
            headers += [(name, value) for name, value in event.headers if name == b"upgrade"]
            headers.append((b"connection", b"upgrade"))
        request = h11.Request(method=event.method, target=event.target, headers=headers)
        attempts = self._candidates()
        for index, backend in enumerate(attempts):
            try:
                backend_conn, reused = await backend.connection()
            except BackendFailed:
                continue
            backend.requests += 1
            try:
                if upgrade:
                    return await self._upgrade(client, backend, backend_conn, request)
                return await self._exchange(client, backend, backend_conn, request)
            except BackendFailed:
                backend_conn.close()
                # A request whose body was not read from the client yet can go to another replica; one whose
                # body was (partly) sent cannot be replayed.
                if client.body_read or client.response_started or index == len(attempts) - 1:
                    break
                if not reused:
                    backend.down_until = time.monotonic() + DOWN_SECONDS
        if client.response_started:
            return False
        await client.send_error(502, "no replica could serve the request")
        return False

    async def _exchange(
        self,
        client: _ClientConnection,
        backend: Backend,
        backend_conn: _BackendConnection,
        request: h11.Request,
    ) -> bool:
        try:
            await backend_conn.send(request)
        except OSError as error:
            raise BackendFailed(str(error)) from error
        body = asyncio.ensure_future(self._forward_body(client, backend_conn))
        try:
            response = await self._response_head(client, backend_conn, body)
            headers = [(name, value) for name, value in response.headers if name not in HOP_BY_HOP]
            await client.send(h11.Response(status_code=response.status_code, headers=headers))
            while True:
                try:
                    event = await backend_conn.next_event()
                except (OSError, h11.ProtocolError):
                    backend_conn.close()
                    return False  # the replica died mid-response: the client sees its connection close
                if isinstance(event, h11.Data):
                    await client.send(h11.Data(data=event.data))
                elif isinstance(event, h11.EndOfMessage):
                    await client.send(h11.EndOfMessage())
                    break
                else:
                    backend_conn.close()
                    return False
            if not body.done():
                # The replica answered before reading the whole body: the rest cannot be framed any more.
                body.cancel()
                backend_conn.close()
                return False
            body.result()
        except BaseException:
            body.cancel()
            raise
        backend.release(backend_conn)
        return client.conn.our_state is h11.DONE and client.conn.their_state is h11.DONE

    async def _response_head(
        self, client: _ClientConnection, backend_conn: _BackendConnection, body: asyncio.Future[None]
    ) -> h11.Response:
        """The final response head, passing informational responses (``100 Continue``) on to the client."""
        while True:
            try:
                event = await backend_conn.next_event()
            except (OSError, h11.ProtocolError) as error:
                raise BackendFailed(str(error)) from error
            if isinstance(event, h11.InformationalResponse):
                headers = [(name, value) for name, value in event.headers if name not in HOP_BY_HOP]
                await client.send(h11.InformationalResponse(status_code=event.status_code, headers=headers))
                continue
            if isinstance(event, h11.Response):
                return event
            if body.done() and body.exception() is not None:
                raise BackendFailed(str(body.exception()))
            raise BackendFailed(f"unexpected event from the replica: {event!r}")

    async def _forward_body(self, client: _ClientConnection, backend_conn: _BackendConnection) -> None:
        while True:
            # A retry of a request whose (empty) body already ended only repeats the end.
            event = h11.EndOfMessage() if client.body_done else await client.next_event()
            if isinstance(event, h11.Data):
                client.body_read = True
                await backend_conn.send(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                client.body_done = True
                await backend_conn.send(h11.EndOfMessage())
                return
            else:
                raise h11.RemoteProtocolError(f"unexpected request event {event!r}")

    async def _upgrade(
        self,
        client: _ClientConnection,
        backend: Backend,
        backend_conn: _BackendConnection,
        request: h11.Request,
    ) -> bool:
        """Send an upgrade request to one replica and, on ``101``, pipe the raw bytes both ways."""
        try:
            await backend_conn.send(request)
            await self._forward_body(client, backend_conn)
            event = await backend_conn.next_event()
        except (OSError, h11.ProtocolError) as error:
            raise BackendFailed(str(error)) from error
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            await client.send(h11.InformationalResponse(status_code=101, headers=list(event.headers)))
            client_rest, _ = client.conn.trailing_data
            backend_rest, _ = backend_conn.conn.trailing_data
            if backend_rest:
                client.writer.write(backend_rest)
            if client_rest:
                backend_conn.writer.write(client_rest)
            await asyncio.gather(
                _pipe(client.reader, backend_conn.writer),
                _pipe(backend_conn.reader, client.writer),
            )
            backend_conn.close()
            return False
        if not isinstance(event, h11.Response):
            raise BackendFailed(f"unexpected event from the replica: {event!r}")
        # Refused upgrade (401, 404 …): pass the answer on and close both.
        headers = [(name, value) for name, value in event.headers if name not in HOP_BY_HOP]
        await client.send(h11.Response(status_code=event.status_code, headers=headers))
        while True:
            body_event = await backend_conn.next_event()
            if isinstance(body_event, h11.Data):
                await client.send(h11.Data(data=body_event.data))
            else:
                break
        await client.send(h11.EndOfMessage())
        backend_conn.close()
        return False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()


class _ClientConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        #: Whether any of the current request's body went to a replica (it can no longer be retried).
        self.body_read = False
        #: Whether the client finished sending the current request's body.
        self.body_done = False

    @property
    def response_started(self) -> bool:
        return self.conn.our_state is not h11.SEND_RESPONSE

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.reader.read(READ_SIZE))
                continue
            return event

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def send_error(self, status: int, message: str) -> None:
        await self.send_json(
            status, {"message": message, "code": "bad_gateway", "request_id": uuid.uuid4().hex}
        )

    async def send_json(self, status: int, document: object) -> None:
        body = json.dumps(document).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers.append((b"connection", b"close"))
        with contextlib.suppress(h11.LocalProtocolError, OSError):
            await self.send(h11.Response(status_code=status, headers=headers))
            await self.send(h11.Data(data=body))
            await self.send(h11.EndOfMessage())


async def serve(port: int, backends: Sequence[str]) -> None:
    """Listen on loopback ``port`` (0: any free one) until SIGTERM; print ``listening on PORT`` when ready."""
    balancer = LoadBalancer(backends)
    server = await asyncio.start_server(
        balancer.handle, "127.0.0.1", port, limit=MAX_HEAD_BYTES, backlog=1024
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on {bound}", flush=True)
    async with server:
        await stop.wait()
    balancer.close_idle()
    counts = ", ".join(f"{b.host}:{b.port}={b.requests}" for b in balancer.backends)
    print(f"requests per replica: {counts}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: ``--port`` and one ``--backend URL`` per replica."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backend", action="append", required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.backend))


if __name__ == "__main__":
    sys.exit(main())
