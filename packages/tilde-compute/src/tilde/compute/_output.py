"""Captured command output: :class:`OutputStream` and :class:`RunResult`."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass


class OutputStream:
    """The bytes a command wrote to one stream, with convenient ways to read them.

    The bytes are kept verbatim (no newline or terminal processing). An ``OutputStream`` compares equal to
    another one, or to ``bytes``, holding the same bytes.

    Args:
        data: The captured bytes (None means empty).

    """

    __hash__ = None  # type: ignore[assignment]  # equality follows mutable-looking content, like the original

    def __init__(self, data: bytes | None = None):
        self._data = bytes(data) if data is not None else b""

    def read(self) -> bytes:
        """Return all the bytes.

        Returns:
            The output as bytes.

        """
        return self._data

    def text(self, encoding: str = "utf-8") -> str:
        """Return the output decoded as text (undecodable bytes are replaced).

        Args:
            encoding: The codec to decode with.

        Returns:
            The output as a string.

        """
        return self._data.decode(encoding, errors="replace")

    def iter_bytes(self, chunk_size: int = 8192) -> Iterator[bytes]:
        """Yield the output in chunks of at most ``chunk_size`` bytes.

        Args:
            chunk_size: The maximum chunk length.

        Yields:
            Byte chunks.

        Raises:
            ValueError: If ``chunk_size`` is not positive.

        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        for start in range(0, len(self._data), chunk_size):
            yield self._data[start : start + chunk_size]

    def iter_text(self, chunk_size: int = 8192, encoding: str = "utf-8") -> Iterator[str]:
        """Yield the output decoded as text, reading ``chunk_size`` bytes at a time.

        Multi-byte characters split across chunk boundaries are decoded whole.

        Args:
            chunk_size: How many bytes to decode per step.
            encoding: The codec to decode with.

        Yields:
            Non-empty text chunks.

        """
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        for chunk in self.iter_bytes(chunk_size):
            text = decoder.decode(chunk)
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def iter_lines(self) -> Iterator[str]:
        """Yield the output's lines without their terminators (nothing at all for empty output).

        Yields:
            Lines of text.

        """
        yield from self.text().splitlines()

    def __str__(self) -> str:
        return self.text()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OutputStream):
            return self._data == other._data
        if isinstance(other, (bytes, bytearray, memoryview)):
            return self._data == bytes(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"OutputStream({len(self._data)} bytes)"


@dataclass(slots=True)
class RunResult:
    """The outcome of a command.

    Attributes:
        stdout: What the command wrote to standard output (for ``execute``: stdout and stderr merged).
        stderr: What the command wrote to standard error (empty for ``execute``).
        exit_code: The exit status; -1 when the server reported none, 124 when a ``timeout`` killed it.

    """

    stdout: OutputStream
    stderr: OutputStream
    exit_code: int

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.exit_code == 0
