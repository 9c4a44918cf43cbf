"""`ConnectionGuard` bookkeeping: caps, displacement of idle connections, one log line per condition."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tilde.server.config import ServerConfig
from tilde.server.connection_guard import (
    ConnectionGuard,
    ConnectionLimits,
    accept_backlog,
    derive_limits,
)


class FakeTransport(asyncio.BaseTransport):
    def __init__(self, peer: str) -> None:
        super().__init__()
        self.peer = peer
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.peer, 40000) if name == "peername" else default

    def close(self) -> None:
        self.closed = True


def guard(total: int, per_address: int) -> ConnectionGuard:
    return ConnectionGuard(ConnectionLimits(total, per_address, header_timeout=20, max_header_bytes=65536))


def test_limits_follow_the_descriptor_limit() -> None:
    assert derive_limits(512) == (384, 256)
    assert derive_limits(1024) == (768, 256)
    assert derive_limits(1 << 20) == (16384, 4096)
    assert derive_limits(64) == (16, 16)
    # What is accepted in one go fits in the reserve left beside the connections.
    for fd_limit in (256, 512, 4096, 1 << 20):
        total, _ = derive_limits(fd_limit)
        assert total + accept_backlog(fd_limit) < fd_limit


def test_configured_caps_win_and_per_address_never_exceeds_total(tmp_path: Any) -> None:
    limits = ConnectionLimits.from_config(ServerConfig(data_dir=tmp_path, max_connections=50), 1 << 20)
    assert (limits.max_connections, limits.max_connections_per_address) == (50, 50)
    config = ServerConfig(data_dir=tmp_path, max_connections=1000, max_connections_per_address=0)
    limits = ConnectionLimits.from_config(config, 512)
    assert (limits.max_connections, limits.max_connections_per_address) == (1000, 0)


def test_full_server_displaces_the_oldest_idle_connection_then_refuses() -> None:
    g = guard(total=3, per_address=0)
    first, second, third = (FakeTransport(f"10.0.0.{n}") for n in range(3))
    for transport in (first, second, third):
        assert g.admit(transport)
    g.set_idle(first, False)  # a request in progress is never displaced
    newcomer = FakeTransport("10.0.0.9")
    assert g.admit(newcomer)
    assert second.closed
    assert not first.closed
    assert not third.closed
    assert g.open == 3
    g.release(second)  # its connection_lost comes later: nothing more to free
    assert g.open == 3
    for transport in (third, newcomer):
        g.set_idle(transport, False)
    assert not g.admit(FakeTransport("10.0.0.10"))
    assert g.refused == 1
    g.release(first)
    assert g.admit(FakeTransport("10.0.0.11"))


def test_one_address_displaces_only_its_own_idle_connections() -> None:
    g = guard(total=100, per_address=2)
    other = FakeTransport("10.0.0.2")
    assert g.admit(other)
    mine = [FakeTransport("10.0.0.1") for _ in range(2)]
    for transport in mine:
        assert g.admit(transport)
        g.set_idle(transport, False)
    assert not g.admit(FakeTransport("10.0.0.1"))
    g.set_idle(mine[1], True)
    assert g.admit(FakeTransport("10.0.0.1"))
    assert mine[1].closed
    assert not other.closed


def test_conditions_are_logged_once_a_minute_at_most(caplog: pytest.LogCaptureFixture) -> None:
    g = guard(total=1, per_address=0)
    caplog.set_level(logging.INFO, logger="tilde.server.connections")
    busy = FakeTransport("10.0.0.1")
    g.admit(busy)
    g.set_idle(busy, False)
    for _ in range(50):
        assert not g.admit(FakeTransport("10.0.0.2"))
    loop = asyncio.new_event_loop()
    try:
        for _ in range(50):
            g.loop_exception_handler(
                loop,
                {"message": "socket.accept() out of system resource", "exception": OSError(24, "Too many")},
            )
    finally:
        loop.close()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert "connection limit reached" in messages[0]
    assert "cannot accept connections: Too many" in messages[1]
