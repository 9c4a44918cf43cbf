"""Each small response leaves the server in one write (header block and body together); responses whose body
comes later still get their header block at once. Behaviour only: nothing here is timed."""

from __future__ import annotations

import asyncio.selector_events
import socket
from collections.abc import Callable
from typing import Any

import pytest

from tilde.server import LocalServer


def _count_socket_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, bytes]]:
    """Record ``(peer address, chunk)`` for every chunk an event loop hands to a socket transport."""
    chunks: list[tuple[Any, bytes]] = []
    transport_class: Any = getattr(asyncio.selector_events, "_SelectorSocketTransport")  # noqa: B009
    original: Callable[..., None] = transport_class.write

    def write(self: Any, data: bytes) -> None:
        chunks.append((self.get_extra_info("peername"), bytes(data)))
        original(self, data)

    monkeypatch.setattr(transport_class, "write", write)
    return chunks


def _raw_get(server: LocalServer, target: str) -> tuple[bytes, Any]:
    """Send one GET over a plain socket; return the whole response and the socket's own address."""
    host, port = server.endpoint_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {server.api_key}\r\n"
            "Connection: close\r\n\r\n"
        )
        sock.sendall(request.encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received, sock.getsockname()


def _writes_to(chunks: list[tuple[Any, bytes]], address: Any) -> list[bytes]:
    return [data for peer, data in chunks if tuple(peer or ()) == tuple(address)]


def test_a_small_response_is_one_write(
    server: LocalServer, repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_files({"small.bin": b"s" * 100})
    chunks = _count_socket_writes(monkeypatch)
    response, address = _raw_get(server, f"/api/v1{repo.url('/object')}?path=small.bin")
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"\r\n\r\n" + b"s" * 100)
    assert _writes_to(chunks, address) == [response]


def test_an_error_response_is_one_write_with_its_request_id(
    server: LocalServer, repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = _count_socket_writes(monkeypatch)
    response, address = _raw_get(server, f"/api/v1{repo.url('/object')}?path=missing.bin")
    assert response.startswith(b"HTTP/1.1 404 ")
    assert b"x-request-id: req-" in response
    assert _writes_to(chunks, address) == [response]


def test_a_large_response_still_streams_after_its_header_block(server: LocalServer, repo: Any) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: streamed from a worker thread in several writes
    repo.write_files({"large.bin": data})
    response, _ = _raw_get(server, f"/api/v1{repo.url('/object')}?path=large.bin")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == data
