"""`ObjectReader`: a lazy, file-like view of one object's bytes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from tilde.data.models import parse_content_length, parse_reproducible

if TYPE_CHECKING:
    from tilde.core import Client as CoreClient

__all__ = ["ObjectReader"]


class ObjectReader:
    """Reads an object over ``GET R/object``; the request is made on first ``read``/``iter_bytes``/``with``.

    Args:
        client: The client to send the request with.
        path: The API path of the object endpoint (``…/repositories/{repo}/object``).
        params: Query parameters (``path`` and ``session_id`` or ``ref``).
        cache: Keep the full body after the first complete ``read()`` and return it again later.
        byte_range: ``(start, end)`` inclusive, or ``(start, None)`` for everything from ``start``.

    Example:
        >>> with session.objects.get("data/big.bin", cache=False) as reader:  # doctest: +SKIP
        ...     for chunk in reader.iter_bytes(1 << 20):
        ...         sink.write(chunk)

    """

    def __init__(
        self,
        client: CoreClient,
        path: str,
        params: dict[str, Any],
        *,
        cache: bool = True,
        byte_range: tuple[int, int | None] | None = None,
    ) -> None:
        if byte_range is not None:
            start, end = byte_range
            if start < 0 or (end is not None and end < start):
                raise ValueError(f"invalid byte range {byte_range!r}")
        self._client = client
        self._path = path
        self._params = dict(params)
        self._cache = cache
        self._byte_range = byte_range
        self._cached_content: bytes | None = None
        self._response: httpx.Response | None = None
        self._exit_stack: contextlib.ExitStack | None = None
        self._consumed = False

    def __repr__(self) -> str:
        return f"ObjectReader(path={self._params.get('path', '')!r})"

    # -- headers ---------------------------------------------------------------------------------------

    @property
    def etag(self) -> str | None:
        """The ``ETag`` header (quotes kept), ``None`` before the request."""
        return self._header("etag")

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` header, ``None`` before the request."""
        return self._header("content-type")

    @property
    def content_length(self) -> int | None:
        """Bytes in this response (the range length for ranged reads), ``None`` before the request."""
        return parse_content_length(self._header("content-length"))

    @property
    def content_range(self) -> str | None:
        """The ``Content-Range`` header of a ranged read, e.g. ``"bytes 0-3/49152"``."""
        return self._header("content-range")

    @property
    def reproducible(self) -> bool | None:
        """``X-Tilde-Reproducible`` as a bool; ``None`` when absent or before the request."""
        return parse_reproducible(self._header("x-tilde-reproducible"))

    # -- reading ---------------------------------------------------------------------------------------

    def read(self, n: int = -1) -> bytes:
        """Return the body.

        Args:
            n: Accepted for file-like compatibility and ignored, as in the published SDK: any call returns
                the rest of the body; only a ``read()`` of the whole body is cached.

        Returns:
            The object's bytes (or the requested range).

        """
        if self._cached_content is not None:
            return self._cached_content
        # Reading again after the body was consumed starts a fresh request rather than returning nothing.
        response = self._open()
        content = b"".join(response.iter_bytes())
        self._consumed = True
        self._release()
        if self._cache and n == -1:
            self._cached_content = content
        return content

    def iter_bytes(self, chunk_size: int = 8192) -> Iterator[bytes]:
        """Stream the body in chunks of up to ``chunk_size`` bytes without buffering it.

        Args:
            chunk_size: Largest chunk yielded.

        Yields:
            Successive pieces of the body.

        """
        if self._cached_content is not None:
            for start in range(0, len(self._cached_content), chunk_size):
                yield self._cached_content[start : start + chunk_size]
            return
        response = self._open()
        self._consumed = True
        try:
            yield from response.iter_bytes(chunk_size)
        finally:
            self._release()

    def close(self) -> None:
        """Release the connection; safe to call more than once."""
        self._release()

    def __enter__(self) -> ObjectReader:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._release()

    # -- internals -------------------------------------------------------------------------------------

    def _open(self) -> httpx.Response:
        if self._response is not None and self._exit_stack is not None and not self._consumed:
            return self._response
        self._release()
        headers: dict[str, str] = {}
        if self._byte_range is not None:
            start, end = self._byte_range
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        stack = contextlib.ExitStack()
        self._response = stack.enter_context(
            self._client._stream(
                "GET", self._path, params=self._params, headers=headers or None, follow_redirects=True
            )
        )
        self._exit_stack = stack
        self._consumed = False
        return self._response

    def _release(self) -> None:
        stack, self._exit_stack = self._exit_stack, None
        if stack is not None:
            stack.close()

    def _header(self, name: str) -> str | None:
        return None if self._response is None else self._response.headers.get(name)
