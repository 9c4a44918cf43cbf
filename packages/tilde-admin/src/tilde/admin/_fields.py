"""Readers for response fields shared by the admin entities: ``null`` and missing become defaults."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tilde.data._timestamps import parse_timestamp


def text_field(data: Mapping[str, Any], key: str) -> str:
    """Read the string at ``key``; ``""`` when missing or ``null``."""
    value = data.get(key)
    return "" if value is None else str(value)


def timestamp_field(data: Mapping[str, Any], key: str) -> datetime | None:
    """Read the RFC 3339 timestamp at ``key`` as an aware datetime; ``None`` when missing or unparsable."""
    return parse_timestamp(data.get(key))
