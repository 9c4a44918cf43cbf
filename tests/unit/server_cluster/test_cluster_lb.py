"""The cluster tests' load balancer (``tests/cluster_lb.py``) against small HTTP/1.1 backends of our own.

Each backend answers its name, echoes a request body's length and digest, streams a chunked response, and on
an upgrade answers ``101`` and then echoes raw bytes; the balancer runs in the test's event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import h11
import httpx
from cluster_lb import LoadBalancer


async def _backend(name: str) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)

        async def next_event() -> object:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                    continue
                return event

        def send(event: h11.Event) -> None:
            data = conn.send(event)
            if data:
                writer.write(data)

        try:
            while True:
                request = await next_event()
                if not isinstance(request, h11.Request):
                    return
                digest = hashlib.sha256()
                size = 0
                while isinstance(event := await next_event(), h11.Data):
                    digest.update(event.data)
                    size += len(event.data)
                if request.target == b"/upgrade":
                    send(
                        h11.InformationalResponse(
                            status_code=101, headers=[("upgrade", "echo"), ("connection", "upgrade")]
                        )
                    )
                    await writer.drain()
                    rest, _ = conn.trailing_data
                    writer.write(rest)
                    while data := await reader.read(65536):
                        writer.write(data)
                        await writer.drain()
                    return
                if request.target == b"/stream":
                    send(h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]))
                    for index in range(3):
                        send(h11.Data(data=f"{name}-{index};".encode()))
                        await writer.drain()
                        await asyncio.sleep(0)
                else:
                    body = (
                        name.encode()
                        if request.target == b"/name"
                        else f"{size}:{digest.hexdigest()}".encode()
                    )
                    send(h11.Response(status_code=200, headers=[("content-length", str(len(body)))]))
                    send(h11.Data(data=body))
                send(h11.EndOfMessage())
                await writer.drain()
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _run(body: Callable[[str], Awaitable[None]], names: list[str], *, dead: int = 0) -> None:
    """Start backends named ``names`` plus ``dead`` closed ports behind a balancer and run ``body(url)``."""

    async def main() -> None:
        servers = []
        urls = []
        for name in names:
            server, url = await _backend(name)
            servers.append(server)
            urls.append(url)
        urls += [_closed_port() for _ in range(dead)]
        balancer = LoadBalancer(urls)
        front = await asyncio.start_server(balancer.handle, "127.0.0.1", 0)
        try:
            await body(f"http://127.0.0.1:{front.sockets[0].getsockname()[1]}")
        finally:
            front.close()
            await front.wait_closed()
            balancer.close_idle()
            for server in servers:
                server.close()
                await server.wait_closed()
            # Let the handlers see their connections end before the loop goes.
            for _ in range(5):
                await asyncio.sleep(0.01)

    asyncio.run(main())


def test_requests_on_one_kept_alive_connection_go_to_different_backends() -> None:
    async def body(url: str) -> None:
        connections: list[object] = []
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=1)) as client:
            seen = set()
            for _ in range(40):
                response = await client.get("/name")
                assert response.status_code == 200
                seen.add(response.text)
                connections.append(response.extensions["network_stream"])
        assert seen == {"a", "b", "c"}
        assert len({id(stream) for stream in connections}) == 1

    _run(body, ["a", "b", "c"])


def test_chunked_and_sized_request_bodies_arrive_whole() -> None:
    data = bytes(range(256)) * 4099

    async def chunks() -> AsyncIterator[bytes]:
        for offset in range(0, len(data), 70000):
            yield data[offset : offset + 70000]

    async def body(url: str) -> None:
        expected = f"{len(data)}:{hashlib.sha256(data).hexdigest()}"
        async with httpx.AsyncClient(base_url=url) as client:
            sized = await client.post("/echo", content=data)
            chunked = await client.post("/echo", content=chunks())
            empty = await client.post("/echo", content=b"")
        assert sized.text == expected
        assert chunked.text == expected
        assert empty.text == f"0:{hashlib.sha256(b'').hexdigest()}"

    _run(body, ["a", "b"])


def test_a_chunked_response_is_streamed_through() -> None:
    async def body(url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(5):
                response = await client.get("/stream")
                name = response.text.split("-")[0]
                assert response.text == f"{name}-0;{name}-1;{name}-2;"

    _run(body, ["a", "b"])


def test_a_backend_that_refuses_connections_is_skipped() -> None:
    async def body(url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            answers = [await client.get("/name") for _ in range(20)]
        assert {response.status_code for response in answers} == {200}
        assert {response.text for response in answers} == {"a"}

    _run(body, ["a"], dead=2)


def test_no_live_backend_is_a_502_with_the_error_body() -> None:
    async def body(url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/name")
        assert response.status_code == 502
        assert set(response.json()) == {"message", "code", "request_id"}

    _run(body, [], dead=2)


def test_an_upgrade_is_piped_both_ways_to_one_backend() -> None:
    async def body(url: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /upgrade HTTP/1.1\r\nhost: x\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\nearly;"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        writer.write(b"late;")
        await writer.drain()
        echoed = b""
        while len(echoed) < len(b"early;late;"):
            echoed += await reader.read(100)
        assert echoed == b"early;late;"
        writer.close()

    _run(body, ["a", "b"])
