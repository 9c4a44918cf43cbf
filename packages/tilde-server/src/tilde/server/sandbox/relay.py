"""Host side of the sandbox's way back to the server: unix sockets the in-sandbox agent forwards to.

A sandbox without network cannot reach the server's TCP port, so the agent listens on ``127.0.0.1`` inside the
sandbox and forwards each connection over a unix socket in the bind-mounted run directory. Here, in the server
process, one socket pipes bytes to the server's own HTTP port (the API), and another answers the IMDS-style
credentials request (CONTRACT §1.3) itself with a fresh scoped token for that sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

__all__ = ["close_server", "short_path", "start_api_relay", "start_credentials_server"]

_CHUNK = 64 * 1024
_MAX_HEAD = 16 * 1024


def short_path(dir_fd: int, name: str) -> str:
    """Return a path to ``name`` inside the directory open as ``dir_fd`` that fits a unix socket address.

    Unix socket paths are limited to 108 bytes; going through ``/proc/self/fd`` keeps them short however deep
    the server's data directory is.
    """
    return f"/proc/self/fd/{dir_fd}/{name}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


async def start_api_relay(path: str, address: Callable[[], tuple[str, int] | None]) -> asyncio.AbstractServer:
    """Listen on ``path`` and pipe every connection to the server's HTTP port.

    Args:
        path: Unix socket path to create.
        address: Returns the server's ``(host, port)`` (None while unknown: connections are refused).

    Returns:
        The listening server.

    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = address()
        if target is None:
            await _close(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            await _close(writer)
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            await _close(up_writer)
            await _close(writer)

    return await asyncio.start_unix_server(handle, path=path)


def _http_response(status: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + payload


async def start_credentials_server(path: str, issue: Callable[[], dict[str, Any]]) -> asyncio.AbstractServer:
    """Listen on ``path`` and answer each ``GET`` with ``issue()`` as JSON (one request per connection).

    Args:
        path: Unix socket path to create.
        issue: Builds the credentials body (mints a token).

    Returns:
        The listening server.

    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method = head.split(b" ", 1)[0]
            if method != b"GET":
                response = _http_response(
                    "405 Method Not Allowed",
                    {"message": "use GET", "code": "method_not_allowed", "request_id": ""},
                )
            else:
                response = _http_response("200 OK", issue())
            writer.write(response)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass
        finally:
            await _close(writer)

    return await asyncio.start_unix_server(handle, path=path, limit=_MAX_HEAD)


async def close_server(server: asyncio.AbstractServer) -> None:
    """Stop listening (connections in flight end on their own)."""
    server.close()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(server.wait_closed(), 1.0)
