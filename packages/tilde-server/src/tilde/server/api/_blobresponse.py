"""Serving stored blobs: byte ranges (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) and large-chunk streaming."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tilde.server.errors import ApiError

#: Read size per worker-thread call; large chunks keep the per-chunk overhead negligible.
CHUNK_SIZE = 1024 * 1024

_RANGE_RE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.IGNORECASE)
#: Most digits of a range bound: 19 digits reach past any object size (2^63), more are refused (400).
MAX_RANGE_DIGITS = 19


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return ``(start, end_exclusive)`` for a single-range ``Range`` header, or None to serve everything.

    Malformed and multi-range headers are ignored (RFC 9110 allows it). An unsatisfiable range raises a 416
    `ApiError` carrying ``Content-Range: bytes */size``; a bound longer than `MAX_RANGE_DIGITS` digits, a 400.

    Args:
        header: The ``Range`` header value, if any.
        size: The object's size.

    """
    if not header:
        return None
    match = _RANGE_RE.fullmatch(header)
    if match is None:
        return None
    first, last = match.groups()
    if len(first) > MAX_RANGE_DIGITS or len(last) > MAX_RANGE_DIGITS:
        raise ApiError(400, "invalid_range", f"a Range bound has more than {MAX_RANGE_DIGITS} digits")
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size
    start = int(first)
    end = size if not last else int(last) + 1
    if last and int(last) < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(end, size)


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(
        416,
        "range_not_satisfiable",
        f"range not satisfiable for an object of {size} bytes",
        {"Content-Range": f"bytes */{size}"},
    )


class BlobResponse(Response):
    """Stream ``[start, end)`` of an immutable file, reading large chunks in a worker thread.

    Stops reading as soon as the client disconnects.

    Args:
        path: The blob file.
        start: First byte.
        end: One past the last byte.
        status_code: 200 or 206.
        headers: Response headers (Content-Length is set here).

    """

    def __init__(
        self, path: Path, start: int, end: int, status_code: int, headers: Mapping[str, str]
    ) -> None:
        super().__init__(status_code=status_code, headers={**headers, "Content-Length": str(end - start)})
        self.path = path
        self.start = start
        self.end = end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the headers, then the bytes."""
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope.get("method") == "HEAD" or self.start >= self.end:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        fd = await anyio.to_thread.run_sync(os.open, self.path, os.O_RDONLY)
        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                await self._send_range(fd, send)
                group.cancel_scope.cancel()
        finally:
            os.close(fd)

    async def _send_range(self, fd: int, send: Send) -> None:
        offset = self.start
        while offset < self.end:
            data = await anyio.to_thread.run_sync(os.pread, fd, min(CHUNK_SIZE, self.end - offset), offset)
            if not data:
                raise OSError(f"{self.path} is shorter than expected")
            offset += len(data)
            await send({"type": "http.response.body", "body": data, "more_body": offset < self.end})
