"""Identifiers and timestamps shared by the registry and the HTTP layer."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone


def new_id() -> str:
    """Return a new time-ordered UUID (version 7 layout), so ordering by id is ordering by creation."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def rfc3339(moment: datetime) -> str:
    """Format a datetime as RFC 3339 in UTC with a ``Z`` suffix (naive values are taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    # isoformat is a third of strftime's cost; listings format one timestamp per entry.
    return moment.isoformat(timespec="microseconds") + "Z"


def utc_now() -> str:
    """Return the current time, RFC 3339 UTC."""
    return rfc3339(datetime.now(timezone.utc))
