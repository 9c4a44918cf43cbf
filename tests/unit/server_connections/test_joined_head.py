"""The response cycle's transport view: the header block waits for the body, never longer than a loop turn."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from tilde.server.connection_guard import JOIN_BODY_MAX, _JoinedHeadTransport


class _Recorder:
    """A transport that records what it is given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


def _joined(loop: asyncio.AbstractEventLoop) -> tuple[_JoinedHeadTransport, _Recorder]:
    recorder = _Recorder()
    return _JoinedHeadTransport(cast(asyncio.Transport, recorder), loop), recorder


def test_the_header_block_goes_out_with_the_body() -> None:
    async def scenario() -> list[bytes]:
        joined, recorder = _joined(asyncio.get_running_loop())
        joined.write(b"HEAD\r\n\r\n")
        assert recorder.writes == []
        joined.write(b"body")
        joined.write(b"more")
        await asyncio.sleep(0)
        return recorder.writes

    assert asyncio.run(scenario()) == [b"HEAD\r\n\r\nbody", b"more"]


def test_a_header_block_without_a_body_yet_goes_out_on_the_next_loop_turn() -> None:
    async def scenario() -> list[bytes]:
        joined, recorder = _joined(asyncio.get_running_loop())
        joined.write(b"HEAD\r\n\r\n")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        first = list(recorder.writes)
        joined.write(b"later")
        assert first == [b"HEAD\r\n\r\n"]
        return recorder.writes

    assert asyncio.run(scenario()) == [b"HEAD\r\n\r\n", b"later"]


def test_a_large_body_follows_its_header_block_uncopied() -> None:
    async def scenario() -> list[bytes]:
        joined, recorder = _joined(asyncio.get_running_loop())
        joined.write(b"HEAD")
        joined.write(b"x" * (JOIN_BODY_MAX + 1))
        return recorder.writes

    writes = asyncio.run(scenario())
    assert [len(w) for w in writes] == [4, JOIN_BODY_MAX + 1]


def test_closing_flushes_first_and_the_rest_is_the_real_transport() -> None:
    async def scenario() -> _Recorder:
        joined, recorder = _joined(asyncio.get_running_loop())
        joined.write(b"HEAD")
        assert joined.get_extra_info("peername") == "info:peername"
        assert not joined.is_closing()
        joined.close()
        await asyncio.sleep(0)
        return recorder

    recorder = asyncio.run(scenario())
    assert recorder.writes == [b"HEAD"]
    assert recorder.closed
