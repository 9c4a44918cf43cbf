"""Access lines written without `logging`: the lines uvicorn's logging path writes, one write per turn."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import socket
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from uvicorn.logging import AccessFormatter
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from tilde.server.access_log import (
    REDACTED,
    UVICORN_ACCESS_FORMAT,
    AccessLineWriter,
    RedactQueryFilter,
    TurnFlushedStreamHandler,
    access_line_writer,
)
from tilde.server.config import ServerConfig
from tilde.server.connection_guard import make_server


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


_names = itertools.count()


def _configure(
    stream: io.StringIO, *, use_colors: bool = False, fmt: str = UVICORN_ACCESS_FORMAT
) -> logging.Logger:
    """Set up a new logger as ``tilde-server serve`` sets up the access logger.

    Made in the test's body: pytest lends its capture handler to loggers that do not propagate when a test
    starts, and a second handler is a configuration the writer rightly declines.
    """
    logger = logging.getLogger(f"tilde.test.access.{next(_names)}")
    handler = TurnFlushedStreamHandler(stream)
    handler.setFormatter(AccessFormatter(fmt=fmt, use_colors=use_colors))
    logger.handlers = [handler]
    logger.filters = [RedactQueryFilter()]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _scope(target: str, *, method: str = "GET", client: tuple[str, int] | None = ("10.1.2.3", 5555)) -> Any:
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "method": method,
        "http_version": "1.1",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "client": client,
    }


CASES = [
    (_scope("/api/v1/organizations"), 200),
    (_scope("/uploads/u1?expires=1&signature=abc"), 200),
    (_scope("/api/v1/x?path=a%20b&token=t0k3n", method="PUT"), 401),
    (_scope('/x%22y?a="b"'), 404),
    (_scope("/healthz", client=None), 599),
]


@pytest.mark.parametrize(("scope", "status"), CASES)
def test_a_line_is_the_line_of_uvicorns_logging_path(scope: Any, status: int) -> None:
    stream = _CountingStream()
    writer = access_line_writer(_configure(stream).name)
    expected_stream = io.StringIO()
    expected_logger = _configure(expected_stream)
    assert writer is not None

    async def both() -> None:
        # What uvicorn's response cycle logs, through logging and the redaction filter ...
        expected_logger.info(
            '%s - "%s %s HTTP/%s" %d',
            get_client_addr(scope),
            scope["method"],
            get_path_with_query_string(scope),
            scope["http_version"],
            status,
        )
        # ... and the same response through the writer.
        writer.log(scope, status)
        await asyncio.sleep(0)

    asyncio.run(both())
    assert stream.getvalue() == expected_stream.getvalue()
    assert stream.getvalue().startswith("INFO:     ")
    assert "abc" not in stream.getvalue()
    assert "t0k3n" not in stream.getvalue()


def test_the_lines_of_one_loop_turn_go_out_in_one_write() -> None:
    stream = _CountingStream()
    writer = access_line_writer(_configure(stream).name)
    assert writer is not None

    async def scenario() -> tuple[int, int]:
        for n in range(3):
            writer.log(_scope(f"/n/{n}"), 200)
        during = stream.writes
        await asyncio.sleep(0)
        return during, stream.writes

    assert asyncio.run(scenario()) == (0, 1)
    assert stream.getvalue().count("\n") == 3


@pytest.mark.parametrize(
    "change",
    ["colours", "format", "second handler", "propagates", "other filter", "warnings only"],
)
def test_other_configurations_keep_the_logging_path(change: str) -> None:
    logger = _configure(
        io.StringIO(),
        use_colors=change == "colours",
        fmt="%(client_addr)s %(status_code)s" if change == "format" else UVICORN_ACCESS_FORMAT,
    )
    if change == "second handler":
        logger.addHandler(logging.StreamHandler(io.StringIO()))
    elif change == "propagates":
        logger.propagate = True
    elif change == "other filter":
        logger.addFilter(logging.Filter("something"))
    elif change == "warnings only":
        logger.setLevel(logging.WARNING)
    assert access_line_writer(logger.name) is None


def test_a_served_request_is_logged_once_in_uvicorns_format(tmp_path: Any) -> None:
    """Through the guarded server over a real socket: one line per response, uvicorn's own logging off."""

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi", status_code=202)

    app = Starlette(routes=[Route("/hello", hello, methods=["GET", "POST"])])
    server = make_server(app, ServerConfig(data_dir=tmp_path), log_level="info")
    stream = _CountingStream()
    access = logging.getLogger("uvicorn.access")
    handler = access.handlers[0]  # uvicorn's (any capture handler pytest lent the logger comes after it)
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    access.handlers = [handler]
    access.addFilter(RedactQueryFilter())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def scenario() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = asyncio.get_running_loop().time() + 30
        while not server.started:
            assert not serving.done(), "the server stopped before it started"
            assert asyncio.get_running_loop().time() < deadline, "the server did not start"
            await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/hello", params={"signature": "s3cr3t"})).status_code == 202
                # A body sent after "100 Continue": the interim status is no line of its own.
                posted = await client.post("/hello", content=b"x" * 10, headers={"Expect": "100-continue"})
                assert posted.status_code == 202
                assert (await client.get("/missing")).status_code == 404
        finally:
            server.should_exit = True
            await serving

    try:
        asyncio.run(scenario())
    finally:
        sock.close()
        logging.getLogger("uvicorn.access").filters = []
    lines = stream.getvalue().splitlines()
    assert [line.split(" - ", 1)[1] for line in lines] == [
        f'"GET /hello?signature={REDACTED} HTTP/1.1" 202 Accepted',
        '"POST /hello HTTP/1.1" 202 Accepted',
        '"GET /missing HTTP/1.1" 404 Not Found',
    ]
    assert all(line.startswith("INFO:     127.0.0.1:") for line in lines)
    assert isinstance(access_line_writer(), AccessLineWriter)
