"""Host side of the agent's control protocol (frames: 1 byte type, 4 bytes big-endian length, payload)."""

from __future__ import annotations

import asyncio
import contextlib

from tilde.server.sandbox._agent import (
    FRAME_EXIT,
    FRAME_KILL,
    FRAME_LAUNCH,
    FRAME_SHUTDOWN,
    FRAME_STDERR,
    FRAME_STDIN,
    FRAME_STDIN_CLOSE,
    FRAME_STDOUT,
    HEADER,
)

__all__ = [
    "FRAME_EXIT",
    "FRAME_KILL",
    "FRAME_LAUNCH",
    "FRAME_SHUTDOWN",
    "FRAME_STDERR",
    "FRAME_STDIN",
    "FRAME_STDIN_CLOSE",
    "FRAME_STDOUT",
    "encode_frame",
    "read_frame",
    "send_shutdown",
]

#: Largest frame the host accepts from the agent (it sends at most 64 KiB of output at a time).
MAX_AGENT_FRAME = 16 * 1024 * 1024


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """One control frame."""
    return HEADER.pack(kind, len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """Read one frame; None at end of stream or on a malformed frame."""
    try:
        header = await reader.readexactly(HEADER.size)
        kind, length = HEADER.unpack(header)
        if length > MAX_AGENT_FRAME:
            return None
        payload = await reader.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return None
    return kind, payload


async def send_shutdown(path: str) -> bool:
    """Ask the agent to stop every command and exit; True when the request was delivered."""
    try:
        _, writer = await asyncio.open_unix_connection(path)
    except OSError:
        return False
    try:
        writer.write(encode_frame(FRAME_SHUTDOWN))
        await writer.drain()
        return True
    except (ConnectionError, OSError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
