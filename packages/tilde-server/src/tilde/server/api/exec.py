"""The ``/exec`` websocket (CONTRACT §7): relays one command between a client and the sandbox's agent.

Handshake: the bearer token is checked by the auth middleware (refused with 403); then an unknown sandbox is
refused with 404, a finished one with 410 and one that is not running yet with 503. After the LAUNCH frame the
server opens a connection to the in-sandbox agent and relays frames both ways: STDIN/STDIN_CLOSE to the agent,
STDOUT/STDERR (split to at most 1 MiB per message) and EXIT back. EXIT is always sent before the server
closes, the command runs without waiting for stdin, and an exec that is idle but running is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from tilde.server.api.sandboxes import SANDBOX, lookup_sandbox, owner_url
from tilde.server.cluster.forward import forward_websocket
from tilde.server.errors import ApiError
from tilde.server.sandbox.agent_client import (
    FRAME_EXIT,
    FRAME_KILL,
    FRAME_LAUNCH,
    FRAME_STDERR,
    FRAME_STDIN,
    FRAME_STDIN_CLOSE,
    FRAME_STDOUT,
    connect_agent,
    encode_frame,
    read_frame,
)
from tilde.server.sandbox.record import RemoteSandbox, SandboxRecord

__all__ = ["MAX_MESSAGE", "routes"]

#: Largest websocket message sent to the client (the websockets client's default ``max_size``).
MAX_MESSAGE = 1024 * 1024


async def _refuse(websocket: WebSocket, status: int) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(Response(status_code=status))
    else:
        await websocket.close(code=1008)


def _exit_payload(body: dict[str, Any]) -> bytes:
    return bytes([FRAME_EXIT]) + json.dumps(body).encode()


async def _client_to_agent(websocket: WebSocket, writer: asyncio.StreamWriter) -> None:
    """Forward STDIN / STDIN_CLOSE; when the client goes away, kill the command."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if not data:
                continue  # text and empty messages are not part of the protocol
            if data[0] == FRAME_STDIN:
                writer.write(encode_frame(FRAME_STDIN, data[1:]))
            elif data[0] == FRAME_STDIN_CLOSE:
                writer.write(encode_frame(FRAME_STDIN_CLOSE))
            else:
                continue
            await writer.drain()
        writer.write(encode_frame(FRAME_KILL))
        await writer.drain()
    except (ConnectionError, OSError, RuntimeError):
        pass


async def _agent_to_client(websocket: WebSocket, reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """Forward output; returns the EXIT body, or None when the agent went away without one."""
    while True:
        frame = await read_frame(reader)
        if frame is None:
            return None
        kind, payload = frame
        if kind in (FRAME_STDOUT, FRAME_STDERR):
            for start in range(0, len(payload), MAX_MESSAGE - 1):
                await websocket.send_bytes(bytes([kind]) + payload[start : start + MAX_MESSAGE - 1])
        elif kind == FRAME_EXIT:
            try:
                body = json.loads(payload)
            except ValueError:
                body = None
            return body if isinstance(body, dict) else {"exit_code": -1, "error": "malformed exit report"}


async def exec_endpoint(websocket: WebSocket) -> None:
    """Run one command in a running sandbox over the §7 binary frame protocol."""
    try:
        _, record = await lookup_sandbox(websocket, "ExecSandbox")
    except ApiError as error:
        await _refuse(websocket, error.status)
        return
    if record.is_terminal:
        await _refuse(websocket, 410)
        return
    if isinstance(record, RemoteSandbox):
        # Another node runs it: the websocket is piped there (which refuses it if not running yet).
        try:
            url = await owner_url(websocket, record)
        except ApiError as error:
            await _refuse(websocket, error.status)
            return
        await forward_websocket(websocket, url)
        return
    if record.status != "running":
        await _refuse(websocket, 503)
        return
    await websocket.accept()
    try:
        first = await websocket.receive()
        while first["type"] != "websocket.disconnect" and not first.get("bytes"):
            first = await websocket.receive()  # ignore text / empty messages before LAUNCH
        if first["type"] == "websocket.disconnect":
            return
        data: bytes = first["bytes"]
        if data[0] != FRAME_LAUNCH:
            await websocket.send_bytes(
                _exit_payload({"exit_code": -1, "error": "the first frame must be LAUNCH"})
            )
            await websocket.close()
            return
        await _relay(websocket, record, data[1:])
    except Exception:
        with contextlib.suppress(Exception):
            await websocket.send_bytes(_exit_payload({"exit_code": -1, "error": "internal error"}))
            await websocket.close()
        raise


async def _relay(websocket: WebSocket, record: SandboxRecord, launch: bytes) -> None:
    connection = await connect_agent(record)
    if connection is None:
        await websocket.send_bytes(_exit_payload({"exit_code": -1, "reason": "sandbox_finished"}))
        await websocket.close()
        return
    reader, writer = connection
    upstream = asyncio.ensure_future(_client_to_agent(websocket, writer))
    body: dict[str, Any] | None = None
    try:
        writer.write(encode_frame(FRAME_LAUNCH, launch))
        await writer.drain()
        body = await _agent_to_client(websocket, reader)
    except Exception:  # the client or the agent went away; the command is killed when its connection closes
        body = None
    finally:
        upstream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upstream
        try:
            if body is None:
                body = {
                    "exit_code": -1,
                    "reason": "sandbox_finished",
                    "error": "the sandbox ended during the command",
                }
            # The client hears of the exit first; the agent's connection is closed after.
            with contextlib.suppress(Exception):
                await websocket.send_bytes(_exit_payload(body))
                await websocket.close()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


routes: list[BaseRoute] = [WebSocketRoute(SANDBOX + "/exec", exec_endpoint)]
