"""Timestamps as integer microseconds since the Unix epoch (exact, compact, sortable)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

__all__ = ["from_micros", "now_micros", "to_micros"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def now_micros() -> int:
    """Return the current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def from_micros(us: int) -> datetime:
    """Convert microseconds since the epoch to an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


def to_micros(value: datetime) -> int:
    """Convert an aware datetime to microseconds since the epoch."""
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
