"""Lenient RFC 3339 timestamp parsing that behaves the same on Python 3.10 and later.

``datetime.fromisoformat`` only learned ``Z`` and arbitrary fractional digits in 3.11, and servers written in
Go send nanosecond precision, so timestamps are normalised before parsing.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?:\.(?P<fraction>\d{1,9}))?(?P<zone>[Zz]|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: object) -> datetime | None:
    """Parse an RFC 3339 timestamp leniently.

    Args:
        value: A string such as ``2026-05-14T10:00:00.123456789Z``, an existing ``datetime``, or ``None``.

    Returns:
        A timezone-aware ``datetime`` (a missing zone means UTC), or ``None`` when the value is empty or not a
        timestamp. Fractional digits beyond microseconds are truncated.

    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value.strip():
        return None
    match = _RFC3339.match(value.strip())
    if match is None:
        return None
    clock = match["time"] if match["time"].count(":") == 2 else match["time"] + ":00"
    text = f"{match['date']}T{clock}"
    if match["fraction"]:
        text += "." + match["fraction"][:6].ljust(6, "0")
    zone = match["zone"]
    if zone is None or zone in ("Z", "z"):
        text += "+00:00"
    else:
        text += zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
