"""Response-body wrappers that turn network failures while streaming into `TransportError` subclasses.

A streamed response is handed to callers (object downloads, log streams) after the status was checked;
the body is read later, outside the request core, so its read errors are translated here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx

from tilde.core._logging import redact_url
from tilde.core._transport import transport_error


class _SyncStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, where: str) -> None:
        self._inner = inner
        self._where = where

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except httpx.RequestError as exc:
            raise transport_error(f"{self._where}: reading the response failed: {exc!r}", exc) from exc

    def close(self) -> None:
        self._inner.close()


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, where: str) -> None:
        self._inner = inner
        self._where = where

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.RequestError as exc:
            raise transport_error(f"{self._where}: reading the response failed: {exc!r}", exc) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {redact_url(response.request.url)}"


def wrap_sync_stream(response: httpx.Response) -> None:
    """Make read errors of a streamed, unread sync response raise `TransportError`."""
    if isinstance(response.stream, httpx.SyncByteStream) and not isinstance(response.stream, _SyncStream):
        response.stream = _SyncStream(response.stream, _where(response))


def wrap_async_stream(response: httpx.Response) -> None:
    """Make read errors of a streamed, unread async response raise `TransportError`."""
    if isinstance(response.stream, httpx.AsyncByteStream) and not isinstance(response.stream, _AsyncStream):
        response.stream = _AsyncStream(response.stream, _where(response))
