"""Fixtures for compute's client-only tests: a scripted websocket server standing in for /exec."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from tilde.compute import Client

Script = Callable[[ServerConnection], None]


@dataclass
class FakeExecServer:
    """A websocket server on a loopback port that runs ``script`` for each /exec connection."""

    port: int
    script: Script | None = None
    refuse_with: int | None = None
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def exec_server() -> Iterator[FakeExecServer]:
    state: dict[str, Any] = {}

    def process_request(connection: ServerConnection, request: Any) -> Any:
        fake: FakeExecServer = state["fake"]
        fake.paths.append(request.path)
        fake.headers.append(dict(request.headers.raw_items()))
        if fake.refuse_with is not None:
            return connection.respond(fake.refuse_with, '{"message": "sandbox finished", "code": "gone"}\n')
        return None

    def handler(connection: ServerConnection) -> None:
        fake: FakeExecServer = state["fake"]
        try:
            assert fake.script is not None
            fake.script(connection)
        finally:
            fake.closed.set()

    server: Server = serve(handler, "127.0.0.1", 0, process_request=process_request, compression=None)
    fake = FakeExecServer(port=server.socket.getsockname()[1])
    state["fake"] = fake
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def client(exec_server: FakeExecServer) -> Iterator[Client]:
    with Client(endpoint_url=exec_server.endpoint, api_key="tuk-test", max_retries=0) as c:
        yield c
