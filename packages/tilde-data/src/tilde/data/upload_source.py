"""Normalise whatever a caller passes to ``put`` into one readable source of known or unknown size."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Union

__all__ = ["UploadData", "UploadSource"]

#: What ``SessionObjects.put`` accepts.
UploadData = Union[bytes, bytearray, memoryview, "os.PathLike[str]", IO[bytes], Iterable[bytes]]

_READ_CHUNK = 1024 * 1024


class UploadSource:
    """A forward-only byte source with an optional size, rewindable when the underlying data allows it.

    Strategies read it in pieces (``read_block``) or as a chunk iterator (``iter_chunks``); neither reads more
    than the requested block from a file or iterable. In-memory inputs stay whole (they already are); each
    block is a copy of the requested slice.

    Args:
        data: ``bytes``-like, a ``pathlib.Path`` (opened here and closed by ``close``), a binary file object
            (read from its current position; measured by seeking to the end when seekable), or an iterable of
            ``bytes`` (unknown size).

    Raises:
        TypeError: ``data`` is a ``str`` or another unsupported type.

    """

    def __init__(self, data: UploadData) -> None:
        self._owned: IO[bytes] | None = None
        self._buffer: memoryview | None = None
        self._file: IO[bytes] | None = None
        self._iterator: Iterator[bytes] | None = None
        self._pending = b""
        self._position = 0
        self._start = 0
        self._fd: int | None = None
        self._seek_lock = threading.Lock()
        self.size: int | None = None
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._buffer = memoryview(data).cast("B")
            self.size = len(self._buffer)
        elif isinstance(data, os.PathLike):
            self._owned = self._file = Path(data).open("rb")  # noqa: SIM115 - closed by close()
            self.size = os.fstat(self._owned.fileno()).st_size
            self._fd = _positional_fd(self._owned)
        elif isinstance(data, str):
            raise TypeError(
                "put() takes bytes, a pathlib.Path, a binary file or an iterable of bytes, not str"
            )
        elif hasattr(data, "read"):
            stream: IO[bytes] = data  # type: ignore[assignment]
            self._file = stream
            self.size = _remaining_size(stream)
            self._start = stream.tell() if self.size is not None else 0
            self._fd = _positional_fd(stream) if self.size is not None else None
        elif isinstance(data, Iterable):
            self._iterator = iter(data)
        else:
            raise TypeError(f"cannot upload {type(data).__name__}")

    @property
    def rewindable(self) -> bool:
        """Whether ``rewind`` can restart the source from the beginning."""
        if self._buffer is not None:
            return True
        if self._file is not None:
            return self.size is not None
        return self._position == 0 and not self._pending

    @property
    def random_access(self) -> bool:
        """Whether any byte range can be read at any time (`read_at`): in-memory data and seekable files.

        Uploads of such sources read each part at its offset when it is sent, and again when it is resent,
        so nothing but the chunk on the wire is held in memory.
        """
        return self._buffer is not None or (self._file is not None and self.size is not None)

    def read_at(self, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` (from the source's start); `read_block` is not moved.

        Files with a descriptor are read with ``os.pread``, so threads read their parts concurrently;
        other seekable files seek and read under a lock (and are put back where they were).

        Args:
            offset: Where to read, counted from the source's start.
            size: Bytes wanted; fewer come back only at the end.

        Returns:
            The bytes.

        Raises:
            ValueError: The source is not `random_access`.

        """
        if self._buffer is not None:
            return self._buffer[offset : offset + size].tobytes()
        if self._file is None or self.size is None:
            raise ValueError("the upload source cannot be read at an offset")
        if self._fd is not None:
            pieces: list[bytes] = []
            have = 0
            while have < size:
                piece = os.pread(self._fd, size - have, self._start + offset + have)
                if not piece:
                    break
                pieces.append(piece)
                have += len(piece)
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        with self._seek_lock:
            here = self._file.tell()
            try:
                self._file.seek(self._start + offset)
                return _read_exactly(self._file, size)
            finally:
                self._file.seek(here)

    def iter_range(self, offset: int, length: int, chunk_size: int = _READ_CHUNK) -> Iterator[bytes]:
        """Yield ``length`` bytes from ``offset`` in chunks of at most ``chunk_size``, read as they are sent.

        Raises:
            ValueError: The source ends before the range does (a file that shrank during the upload).

        """
        end = offset + length
        while offset < end:
            chunk = self.read_at(offset, min(chunk_size, end - offset))
            if not chunk:
                raise ValueError(f"the upload source ended at byte {offset}, before the {end} announced")
            offset += len(chunk)
            yield chunk

    def rewind(self) -> None:
        """Go back to where the source started.

        Raises:
            ValueError: The source is a consumed iterator or an unseekable stream.

        """
        if self._position == 0 and not self._pending:
            return
        if not self.rewindable:
            raise ValueError("the upload source cannot be rewound")
        if self._file is not None:
            self._file.seek(self._start)
        self._position = 0
        self._pending = b""

    def read_block(self, size: int) -> bytes:
        """Read up to ``size`` bytes; fewer only at the end of the source, ``b""`` once exhausted."""
        if self._buffer is not None:
            block = self._buffer[self._position : self._position + size].tobytes()
        elif self._file is not None:
            block = _read_exactly(self._file, size)
        else:
            block = self._read_iterator(size)
        self._position += len(block)
        return block

    def iter_chunks(self, chunk_size: int = _READ_CHUNK) -> Iterator[bytes]:
        """Yield the rest of the source in chunks of at most ``chunk_size`` bytes."""
        while True:
            block = self.read_block(chunk_size)
            if not block:
                return
            yield block

    def close(self) -> None:
        """Close a file this source opened itself (caller-supplied files stay open)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def _read_iterator(self, size: int) -> bytes:
        assert self._iterator is not None
        pieces = [self._pending] if self._pending else []
        have = len(self._pending)
        while have < size:
            chunk = next(self._iterator, None)
            if chunk is None:
                break
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(f"upload iterables must yield bytes, got {type(chunk).__name__}")
            pieces.append(bytes(chunk))
            have += len(chunk)
        joined = b"".join(pieces)
        self._pending = joined[size:]
        return joined[:size]


def _positional_fd(stream: IO[bytes]) -> int | None:
    """Return the descriptor ``os.pread`` can read ``stream`` from, or None (in-memory or wrapped)."""
    # Only plain files: wrappers such as gzip.GzipFile report the descriptor of the file they decode.
    if not isinstance(stream, (io.FileIO, io.BufferedReader, io.BufferedRandom)):
        return None
    try:
        fd = stream.fileno()
        os.pread(fd, 0, 0)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None
    # Buffered streams opened for writing may hold bytes not yet on disk; pread would miss them.
    if getattr(stream, "writable", lambda: False)():
        try:
            stream.flush()
        except (OSError, ValueError):
            return None
    return fd


def _remaining_size(stream: IO[bytes]) -> int | None:
    """Bytes left from the current position, or ``None`` for unseekable streams."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(here)
    except (OSError, AttributeError, ValueError):
        return None
    return max(end - here, 0)


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    """Read ``size`` bytes unless the stream ends first (raw streams may return short reads)."""
    first = stream.read(size)
    if not first or len(first) == size:
        return bytes(first or b"")
    pieces = [bytes(first)]
    have = len(first)
    while have < size:
        more = stream.read(size - have)
        if not more:
            break
        pieces.append(bytes(more))
        have += len(more)
    return b"".join(pieces)
