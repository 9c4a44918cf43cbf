"""`ObjectReader`: a lazy, seekable, streaming binary file object over one object's bytes."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from tilde.core._transport import transport_error
from tilde.core.errors import APIError, TildeError, TransportError
from tilde.data.models import parse_content_length, parse_reproducible

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from tilde.core import Client as CoreClient

__all__ = ["ObjectChangedError", "ObjectReader"]

#: A forward seek of at most this many bytes past the open stream reads on and discards, rather than
#: dropping the connection for a new ranged request (tar members, zip local headers: many short hops).
SKIP_LIMIT = 256 * 1024
#: Dropped connections in a row (no byte received in between) a read resumes from before giving up.
RESUME_ATTEMPTS = 5

logger = logging.getLogger("tilde.data.download")


class ObjectChangedError(TildeError):
    """An object changed between two requests of one reader (its ``ETag`` differs).

    Bytes read before and after would come from different versions; open a new reader for the new one.
    """


class ObjectReader(io.BufferedIOBase):
    """A read-only binary file object over ``GET R/object``: ``read``, ``seek``, ``tell``, lines, ``with``.

    Why `io.BufferedIOBase` rather than `io.RawIOBase`: ``read(n)`` returns exactly ``n`` bytes unless the
    end comes first, however the network splits the body. Consumers that call ``read(n)`` once and take a
    short answer for the end (``tarfile`` headers, ``zipfile`` records, ``pickle``) then work unchanged;
    ``read1`` and ``readinto1`` still offer "whatever one network read gives" to buffered wrappers such as
    `io.TextIOWrapper`. `readall` is there too, as on raw files.

    Nothing is requested until the first read (or ``with`` entry). One response is open at a time and is read
    chunk by chunk, so memory stays bounded by a chunk plus what the caller asks for. ``seek`` moves the
    position without a request; the next read continues on the open stream when the new position lies within
    it or up to 256 KiB ahead, and otherwise drops it and sends one ranged GET from the new position.
    ``seek(n, 2)`` needs the size: it is known from the first response (``Content-Range`` or
    ``Content-Length``), else one ``HEAD`` asks for it. When a later response's ``ETag`` differs from the
    first, `ObjectChangedError` is raised rather than mixing two versions of the object.

    A ``byte_range`` makes the reader a file of just those bytes: positions are counted from the range's start
    and the end of the range is the end of the file.

    ``cache=True`` (the default) keeps the body in memory only when it has been read whole by a size-less
    ``read()`` from the start; reads with a size never hold more than they return. With the body cached, later
    seeks and reads make no request, and - as in the published 0.7 SDK - a size-less ``read()`` or
    `iter_bytes` at the end returns the whole body again. Pass ``cache=False`` for strict file behaviour there
    (a size-less ``read()`` at the end returns ``b""``).

    Args:
        client: The client to send the requests with.
        path: The API path of the object endpoint (``…/repositories/{repo}/object``).
        params: Query parameters (``path`` and ``session_id`` or ``ref``).
        cache: Keep the full body after a complete size-less ``read()`` (see above).
        byte_range: ``(start, end)`` inclusive, or ``(start, None)`` for everything from ``start``.

    Raises:
        ValueError: A negative start, or an end before the start.

    Example:
        >>> with session.objects.get("data/big.bin", cache=False) as reader:  # doctest: +SKIP
        ...     shutil.copyfileobj(reader, sink)
        >>> with zipfile.ZipFile(commit.objects.get("archive.zip")) as archive:  # doctest: +SKIP
        ...     names = archive.namelist()

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
        # Imported here, not at the top: range arithmetic is no part of ``import tilde.data``'s cost.
        from tilde.data._reader_window import Window

        super().__init__()
        self._window = Window()
        self._client = client
        self._path = path
        self._params = dict(params)
        self._cache = cache
        self._byte_range = byte_range
        self._cached_content: bytes | None = None
        #: Headers of the first GET response (what the header properties report).
        self._headers: httpx.Headers | None = None
        self._etag: str | None = None
        self._pos = 0
        self._size: int | None = None
        # The open response, its chunk iterator, and the chunk in hand: `_buf` holds window bytes
        # [_buf_start, _buf_start + len(_buf)); the stream's next byte is the one right after them.
        self._stack: contextlib.ExitStack | None = None
        self._chunks: Iterator[bytes] | None = None
        self._buf = b""
        self._buf_start = 0
        self._discard = 0
        if byte_range is not None:
            # Checked once every field exists: a rejected reader is still finalised (closed) cleanly.
            start, end = byte_range
            if start < 0 or (end is not None and end < start):
                self.close()
                raise ValueError(f"invalid byte range {byte_range!r}")
            self._window = Window(start, end, ranged=True)

    def __repr__(self) -> str:
        return f"ObjectReader(path={self._params.get('path', '')!r})"

    @property
    def name(self) -> str:
        """The object's path, as a file's ``name`` (what `io.TextIOWrapper` and friends report)."""
        return str(self._params.get("path", ""))

    # -- headers ---------------------------------------------------------------------------------------

    @property
    def etag(self) -> str | None:
        """The ``ETag`` header (quotes kept), ``None`` before the first request."""
        return self._header("etag")

    @property
    def content_type(self) -> str | None:
        """The ``Content-Type`` header, ``None`` before the first request."""
        return self._header("content-type")

    @property
    def content_length(self) -> int | None:
        """Bytes in the first response (the range length for ranged reads), ``None`` before the request."""
        return parse_content_length(self._header("content-length"))

    @property
    def content_range(self) -> str | None:
        """The ``Content-Range`` header of a ranged first response, e.g. ``"bytes 0-3/49152"``."""
        return self._header("content-range")

    @property
    def reproducible(self) -> bool | None:
        """``X-Tilde-Reproducible`` as a bool; ``None`` when absent or before the request."""
        return parse_reproducible(self._header("x-tilde-reproducible"))

    # -- the file object -------------------------------------------------------------------------------

    def readable(self) -> bool:
        """Return True: the reader can be read (`ValueError` once closed)."""
        self._check_open()
        return True

    def seekable(self) -> bool:
        """Return True: ``seek`` is served with ranged requests (`ValueError` once closed)."""
        self._check_open()
        return True

    def tell(self) -> int:
        """Return the current position, counted from the start of the window."""
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position; no request is made (except one ``HEAD`` for ``SEEK_END`` with the size unknown).

        Args:
            offset: Bytes relative to ``whence``.
            whence: ``io.SEEK_SET`` (0), ``io.SEEK_CUR`` (1) or ``io.SEEK_END`` (2).

        Returns:
            The new position.

        Raises:
            ValueError: The reader is closed, ``whence`` is not 0, 1 or 2, or the position would be negative.

        """
        self._check_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._known_size() + offset
        else:
            raise ValueError(f"invalid whence ({whence!r}, should be 0, 1 or 2)")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._pos = target
        return target

    def read(self, n: int | None = -1) -> bytes:
        """Read up to ``n`` bytes from the current position.

        Args:
            n: Bytes wanted; ``-1`` or ``None`` reads to the end. Fewer come back only at the end.

        Returns:
            The bytes; ``b""`` at the end (but see the class notes on ``cache=True``).

        """
        self._check_open()
        if n is None or n < 0:
            return self._read_to_end(replay_cache=True)
        parts: list[bytes] = []
        remaining = n
        while remaining > 0 and self._ready():
            piece = self._take(remaining)
            parts.append(piece)
            remaining -= len(piece)
        return b"".join(parts)

    def readall(self) -> bytes:
        """Read from the current position to the end (``b""`` at the end, whatever ``cache`` says)."""
        self._check_open()
        return self._read_to_end(replay_cache=False)

    def read1(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes with at most one read from the network (``b""`` only at the end).

        Args:
            n: Most bytes wanted; ``-1`` for whatever the next chunk holds.

        Returns:
            The bytes.

        """
        self._check_open()
        if n == 0 or not self._ready():
            return b""
        return self._take(n if n > 0 else len(self._buf))

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` from the current position; fewer bytes than its size only at the end.

        Args:
            buffer: A writable bytes-like object.

        Returns:
            The number of bytes written into it.

        """
        with memoryview(buffer) as view, view.cast("B") as target:
            data = self.read(len(target))
            target[: len(data)] = data
            return len(data)

    def readinto1(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` with at most one read from the network.

        Args:
            buffer: A writable bytes-like object.

        Returns:
            The number of bytes written into it.

        """
        with memoryview(buffer) as view, view.cast("B") as target:
            data = self.read1(len(target))
            target[: len(data)] = data
            return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        """Read one line, up to and including the newline byte (iteration over the reader yields these).

        Args:
            size: Most bytes to return; ``-1`` or ``None`` for no limit.

        Returns:
            The line; ``b""`` at the end.

        """
        self._check_open()
        limit = None if size is None or size < 0 else size
        parts: list[bytes] = []
        taken = 0
        while (limit is None or taken < limit) and self._ready():
            offset = self._pos - self._buf_start
            stop = len(self._buf) if limit is None else min(len(self._buf), offset + limit - taken)
            newline = self._buf.find(b"\n", offset, stop)
            piece = self._take((newline + 1 if newline >= 0 else stop) - offset)
            parts.append(piece)
            taken += len(piece)
            if newline >= 0:
                break
        return b"".join(parts)

    def iter_bytes(self, chunk_size: int = 8192) -> Iterator[bytes]:
        """Stream the rest of the body in chunks of ``chunk_size`` bytes (the last may be shorter).

        Args:
            chunk_size: Bytes per chunk (at least 1).

        Yields:
            Successive pieces, from the current position to the end. With the whole body cached and the
            position at the end, it starts over from the cache (0.7 behaviour).

        Raises:
            ValueError: ``chunk_size`` is less than 1.

        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size!r}")
        self._check_open()
        if self._cached_content is not None and self._pos >= len(self._cached_content):
            self._pos = 0
        while chunk := self.read(chunk_size):
            yield chunk

    def close(self) -> None:
        """Release the connection; later reads raise `ValueError`. Safe to call more than once."""
        self._release()
        self._buf = b""
        super().close()

    def __enter__(self) -> ObjectReader:
        self._check_open()
        if self._headers is None and self._chunks is None and self._cached_content is None:
            # Opened on entry, as in the published SDK, so the header properties work inside the block.
            self._open(self._pos)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed ObjectReader")

    def _read_to_end(self, *, replay_cache: bool) -> bytes:
        cached = self._cached_content
        if cached is not None:
            if replay_cache and self._pos >= len(cached):
                return cached
            data = cached[self._pos :]
            self._pos = max(self._pos, len(cached))
            return data
        start = self._pos
        parts: list[bytes] = []
        while self._ready():
            parts.append(self._take(len(self._buf)))
        data = b"".join(parts)
        if self._cache and start == 0:
            # Serve every later read from memory: the window is the whole cached body.
            self._release()
            self._cached_content = self._buf = data
            self._buf_start = 0
            self._size = len(data)
        return data

    def _take(self, n: int) -> bytes:
        """Return up to ``n`` bytes of the chunk in hand from the position (the caller made it `_ready`)."""
        offset = self._pos - self._buf_start
        piece = self._buf[offset : offset + n]
        self._pos += len(piece)
        return piece

    def _ready(self) -> bool:
        """Make the chunk in hand cover the position; False at the end of the window."""
        pos = self._pos
        if self._size is not None and pos >= self._size:
            return False
        if self._buf_start <= pos < self._buf_start + len(self._buf):
            return True
        stream_at = self._buf_start + len(self._buf)
        reuse = self._chunks is not None and stream_at <= pos <= stream_at + SKIP_LIMIT
        if not reuse and not self._open(pos):
            return False
        while self._next_chunk():
            if pos < self._buf_start + len(self._buf):
                return True
        return False

    def _next_chunk(self) -> bool:
        """Replace the chunk in hand with the stream's next one; False (stream released) at its end.

        A connection that drops in the middle of the body is picked up where it broke off: one ranged GET
        from the first byte not received (the ``ETag`` check keeps the two halves from different versions).
        Up to `RESUME_ATTEMPTS` drops in a row without a byte received in between; then the error is raised.
        """
        failures = 0
        while True:
            stream_at = self._buf_start + len(self._buf)
            try:
                return self._next_chunk_once()
            except (httpx.TransportError, TransportError) as exc:
                failures += 1
                self._release()
                if failures > RESUME_ATTEMPTS:
                    if isinstance(exc, TransportError):
                        raise
                    raise transport_error(
                        f"GET {self._path} ({self.name!r}) failed at byte {stream_at}: {exc!r}", exc
                    ) from exc
                logger.info(
                    "reading %s: the connection dropped at byte %d (%s); resuming from there (try %d of %d)",
                    self.name,
                    self._window.start + stream_at,
                    type(exc).__name__,
                    failures,
                    RESUME_ATTEMPTS,
                )
                if not self._open(stream_at):
                    return False

    def _next_chunk_once(self) -> bool:
        chunks = self._chunks
        if chunks is None:
            return False
        stream_at = self._buf_start + len(self._buf)
        for chunk in chunks:
            if self._discard:
                # A server that ignored ``Range`` (200): skip the bytes before the window position.
                dropped = min(self._discard, len(chunk))
                self._discard -= dropped
                chunk = chunk[dropped:]
            if self._size is not None:
                chunk = chunk[: max(0, self._size - stream_at)]
            if chunk:
                self._buf, self._buf_start = chunk, stream_at
                return True
            if self._size is not None and stream_at >= self._size:
                break
        if self._size is None:
            # The end of the body is the end of the window (short of the position, if the whole object was).
            self._size = stream_at
        self._release()
        self._buf, self._buf_start = b"", stream_at
        return False

    def _open(self, offset: int) -> bool:
        """Open a response reading the window from ``offset``; False when ``offset`` is past the end."""
        self._release()
        self._buf, self._buf_start = b"", offset
        if self._size is not None and offset >= self._size:
            return False
        stack = contextlib.ExitStack()
        try:
            response = stack.enter_context(
                self._client._stream(
                    "GET",
                    self._path,
                    params=self._params,
                    headers=self._window.range_header(offset) or None,
                    follow_redirects=True,
                )
            )
        except APIError as error:
            stack.close()
            # A seek past the end of an object whose size was not known yet: that is the end, not an error.
            if error.status_code == 416 and offset > 0 and offset >= self._known_size():
                return False
            raise
        try:
            self._accept(response, offset)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        self._chunks = response.iter_bytes()
        return True

    def _accept(self, response: httpx.Response, offset: int) -> None:
        """Check a new response against what is known and learn the window's size from it."""
        headers = _object_headers(response)
        self._check_etag(headers.get("etag"))
        if self._headers is None:
            self._headers = headers
        from tilde.data._reader_window import total_size

        total = total_size(response.status_code, response.headers)
        if total is not None and self._size is None:
            self._size = self._window.size_for(total)
        # 200 answers a ranged request with the whole object: skip to where the window position lies.
        self._discard = self._window.start + offset if response.status_code == 200 else 0

    def _check_etag(self, etag: str | None) -> None:
        if etag is None:
            return
        if self._etag is None:
            self._etag = etag
        elif etag != self._etag:
            raise ObjectChangedError(
                f"object {self._params.get('path', '')!r} changed while it was being read "
                f"(ETag {self._etag} became {etag}); open a new reader"
            )

    def _known_size(self) -> int:
        """Return the window's size, asking with one ``HEAD`` when no response has told it yet."""
        if self._size is None:
            response = self._client._head(self._path, params=self._params)
            self._check_etag(response.headers.get("etag"))
            total = parse_content_length(response.headers.get("content-length"))
            if total is None:
                raise io.UnsupportedOperation("the server did not report the object's size")
            self._size = self._window.size_for(total)
        return self._size

    def _release(self) -> None:
        stack, self._stack, self._chunks = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.close()

    def _header(self, name: str) -> str | None:
        return None if self._headers is None else self._headers.get(name)


def _object_headers(response: httpx.Response) -> httpx.Headers:
    """Return the object's headers: the API's own ones when it redirected the download to an object store.

    The bytes, their range and size come from the final response; the ETag, Last-Modified and metadata headers
    come from the API's redirect, since an object store's ETag is a different digest of the same bytes.
    """
    if not response.history:
        return response.headers
    headers = httpx.Headers(response.headers)
    for name, value in response.history[0].headers.items():
        if name in ("etag", "last-modified") or name.startswith("x-tilde-"):
            headers[name] = value
    return headers
