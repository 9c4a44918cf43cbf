"""Host side of the agent's control protocol (frames: 1 byte type, 4 bytes big-endian length, payload)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from typing import TYPE_CHECKING

from tilde.server.sandbox._agent import (
    FRAME_EXIT,
    FRAME_KILL,
    FRAME_LAUNCH,
    FRAME_SHUTDOWN,
    FRAME_STDERR,
    FRAME_STDIN,
    FRAME_STDIN_CLOSE,
    FRAME_STDOUT,
)

if TYPE_CHECKING:
    from tilde.server.sandbox.record import SandboxRecord

__all__ = [
    "FRAME_EXIT",
    "FRAME_KILL",
    "FRAME_LAUNCH",
    "FRAME_SHUTDOWN",
    "FRAME_STDERR",
    "FRAME_STDIN",
    "FRAME_STDIN_CLOSE",
    "FRAME_STDOUT",
    "connect_agent",
    "encode_frame",
    "read_frame",
    "send_shutdown",
]

#: Frame header: 1 byte type, 4 bytes big-endian payload length (the agent's ``encode_header``).
HEADER = struct.Struct(">BI")
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


async def connect_agent(record: SandboxRecord) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """Open a connection to a sandbox's agent, or None when it is not (or no longer) reachable."""
    fd = record.open_control()
    if fd is None:
        return None
    try:
        return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    finally:
        os.close(fd)


async def send_shutdown(record: SandboxRecord) -> bool:
    """Ask the agent to stop every command and exit; True when the request was delivered."""
    connection = await connect_agent(record)
    if connection is None:
        return False
    _, writer = connection
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
