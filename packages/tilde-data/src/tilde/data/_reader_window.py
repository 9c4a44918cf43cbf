"""Byte-range arithmetic for `ObjectReader`: the window a reader exposes and the headers that size it.

A reader shows one *window* of an object: the whole object, or the caller's ``byte_range``. Positions the
reader reports (``tell``, ``seek``) are offsets inside that window; these helpers turn them into ``Range``
headers and learn the window's size from whatever response arrives first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Window", "total_from_content_range", "total_size"]

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:\d+-\d+|\*)\s*/\s*(\d+)\s*$", re.IGNORECASE)


def total_from_content_range(value: str | None) -> int | None:
    """Return the object's total size from ``Content-Range: bytes a-b/total`` (or ``bytes */total``).

    Args:
        value: The header value, if any.

    Returns:
        The total size, or ``None`` when absent, unknown (``/*``) or malformed.

    """
    if value is None:
        return None
    match = _CONTENT_RANGE.match(value)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Window:
    """The part of an object a reader exposes.

    Attributes:
        start: First byte of the window, as an offset in the object.
        end: Last byte of the window (inclusive) in the object, or ``None`` for "to the end".
        ranged: Whether the caller asked for a range (a full read of an unranged reader sends no ``Range``).

    """

    start: int = 0
    end: int | None = None
    ranged: bool = False

    def range_header(self, offset: int) -> dict[str, str]:
        """Return the request headers reading the window from ``offset`` (a window offset) to its end."""
        if not self.ranged and offset == 0:
            return {}
        last = "" if self.end is None else str(self.end)
        return {"Range": f"bytes={self.start + offset}-{last}"}

    def size_for(self, total: int) -> int:
        """Return the window's size in an object of ``total`` bytes (0 when it starts past the end)."""
        last = total - 1 if self.end is None else min(self.end, total - 1)
        return max(0, last - self.start + 1)


def total_size(status_code: int, headers: Mapping[str, str]) -> int | None:
    """Return the object's total size from a GET response's headers, when they say it.

    A ``206`` carries it in ``Content-Range``; a ``200`` is the whole object, so its ``Content-Length`` is the
    size unless the body is content-encoded (then the length counts encoded bytes).

    Args:
        status_code: The response status.
        headers: The response headers (case-insensitive mapping).

    Returns:
        The size in bytes, or ``None`` when unknown.

    """
    if status_code == 206:
        return total_from_content_range(headers.get("content-range"))
    if headers.get("content-encoding", "identity").lower() not in ("", "identity"):
        return None
    length = headers.get("content-length")
    return int(length) if length is not None and length.strip().isdigit() else None
