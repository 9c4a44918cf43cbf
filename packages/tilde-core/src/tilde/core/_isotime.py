"""ISO 8601 parsing that accepts what servers send, identically on Python 3.10 and later.

Python 3.10's ``datetime.fromisoformat`` rejects ``Z`` and fractions that are not 3 or 6 digits long, while Go
servers send up to 9, so the text is normalised first.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

_ISO = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d{1,9}))?([Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)


def parse_iso_datetime(text: str) -> datetime:
    """Parse an ISO 8601 / RFC 3339 date-time.

    Args:
        text: For example ``2026-05-14T10:00:00.123456789Z`` or ``2026-05-14T10:00:00+02:00``.

    Returns:
        A timezone-aware datetime; a value without a zone is taken as UTC. Digits past microseconds are
        dropped.

    Raises:
        ValueError: The text is not an ISO 8601 date-time.

    """
    match = _ISO.match(text.strip())
    if match is None:
        raise ValueError(f"not an ISO 8601 date-time: {text!r}")
    day, clock, fraction, zone = match.groups()
    if clock.count(":") == 1:
        clock += ":00"
    normalised = f"{day}T{clock}"
    if fraction:
        normalised += "." + fraction[:6].ljust(6, "0")
    if zone is None or zone in ("Z", "z"):
        normalised += "+00:00"
    elif len(zone) == 3:
        normalised += zone + ":00"
    else:
        normalised += zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
    parsed = datetime.fromisoformat(normalised)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
