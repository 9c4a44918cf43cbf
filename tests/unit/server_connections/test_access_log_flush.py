"""Access-log lines logged on the event loop are flushed once per loop turn; elsewhere at once."""

from __future__ import annotations

import asyncio
import io
import logging

from tilde.server.access_log import RedactQueryFilter, TurnFlushedStreamHandler, defer_access_log_flush


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def _logger(name: str, stream: _CountingStream) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers = [TurnFlushedStreamHandler(stream)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def test_lines_logged_in_one_loop_turn_are_flushed_together() -> None:
    stream = _CountingStream()
    logger = _logger("tilde.test.access.turn", stream)

    async def scenario() -> tuple[int, int]:
        for n in range(3):
            logger.info("GET /%d 200", n)
        during = stream.flushes
        await asyncio.sleep(0)
        return during, stream.flushes

    during, after = asyncio.run(scenario())
    assert (during, after) == (0, 1)
    assert stream.getvalue() == "GET /0 200\nGET /1 200\nGET /2 200\n"


def test_lines_logged_outside_an_event_loop_are_flushed_at_once() -> None:
    stream = _CountingStream()
    logger = _logger("tilde.test.access.plain", stream)
    logger.info("one")
    assert stream.flushes == 1


def test_the_access_logger_keeps_its_stream_formatter_and_filters() -> None:
    stream = _CountingStream()
    logger = logging.getLogger("tilde.test.access.swap")
    plain = logging.StreamHandler(stream)
    plain.setFormatter(logging.Formatter("[%(message)s]"))
    redactor = RedactQueryFilter()
    plain.addFilter(redactor)
    logger.handlers = [plain]
    defer_access_log_flush("tilde.test.access.swap")
    (handler,) = logger.handlers
    assert isinstance(handler, TurnFlushedStreamHandler)
    assert handler.stream is stream
    assert handler.formatter is plain.formatter
    assert handler.filters == [redactor]
