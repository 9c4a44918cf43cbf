"""Lenient timestamp parsing for response fields (shared with tilde-compute and tilde-admin).

The parsing itself is tilde-core's `parse_iso_datetime` (``Z``, up to nine fractional digits, the same on
Python 3.10 and later); this only turns missing or malformed values into ``None``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from tilde.core._isotime import parse_iso_datetime


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
    if not isinstance(value, str):
        return None
    try:
        return parse_iso_datetime(value)
    except ValueError:
        return None
