"""Object path rules and the key-range helpers listings are built on."""

from __future__ import annotations

import re

from tilde.server.storage.errors import InvalidArgument

__all__ = ["MAX_PATH_BYTES", "MAX_SEGMENT_BYTES", "prefix_upper_bound", "validate_path"]

MAX_PATH_BYTES = 1024
#: Longest segment: a file name in a sandbox's file system (Linux NAME_MAX), so every object can appear there.
MAX_SEGMENT_BYTES = 255

#: C0 and C1 control characters (and DEL), which no path may contain.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

# The largest code point; strings are compared by code point, which is also UTF-8 byte order (SQLite BINARY).
_MAX_CHAR = 0x10FFFF


def validate_path(path: str) -> str:
    """Check an object path and return it unchanged.

    A valid path is non-empty, at most 1024 UTF-8 bytes, has no leading ``/``, no empty segment (``a//b``,
    trailing ``/``), no ``.`` or ``..`` segment, no segment longer than 255 UTF-8 bytes and no NUL or other
    control character. Paths are byte-exact: no Unicode normalisation, so ``"é"`` precomposed (NFC) and
    decomposed (NFD) are two different paths, as in S3 and git.

    Args:
        path: The path to check.

    Returns:
        The same path.

    Raises:
        InvalidArgument: With code ``"invalid_path"`` when a rule is broken.

    """
    if not isinstance(path, str) or not path:
        raise InvalidArgument("path must be a non-empty string", code="invalid_path")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("path is not valid UTF-8", code="invalid_path") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidArgument(f"path is longer than {MAX_PATH_BYTES} bytes", code="invalid_path")
    if path.startswith("/"):
        raise InvalidArgument("path must not start with '/'", code="invalid_path")
    if _CONTROL.search(path):
        raise InvalidArgument("path must not contain control characters", code="invalid_path")
    for segment in path.split("/"):
        if segment == "":
            raise InvalidArgument("path must not contain empty segments", code="invalid_path")
        if segment in (".", ".."):
            raise InvalidArgument("path must not contain '.' or '..' segments", code="invalid_path")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidArgument(
                f"path segments are limited to {MAX_SEGMENT_BYTES} bytes (a file name in a sandbox)",
                code="invalid_path",
            )
    return path


def prefix_upper_bound(prefix: str) -> str | None:
    """Return the smallest string greater than every string starting with ``prefix``.

    Listings select ``path >= prefix AND path < bound`` so SQLite can use a plain index range scan.

    Args:
        prefix: A non-empty prefix.

    Returns:
        The exclusive upper bound, or None when no bound exists (the prefix is all maximal characters).

    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1])
        if code < _MAX_CHAR:
            code += 1
            # Surrogates cannot be encoded; the next valid code point after them sorts identically.
            if 0xD800 <= code <= 0xDFFF:
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None
