"""Validation of request fields (names, bodies); every failure is a 400 `ApiError`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tilde.server.errors import ApiError

#: Organizations, agents and roles (CONTRACT §0).
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}\Z")
#: Repositories: the same, plus underscores.
REPO_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,62}\Z")


def check_name(value: Any, what: str, pattern: re.Pattern[str] = NAME_RE) -> str:
    """Return ``value`` when it is a string matching ``pattern`` (400 otherwise)."""
    if not isinstance(value, str) or not pattern.match(value):
        raise ApiError(400, "invalid_name", f"{what} must match {pattern.pattern}")
    return value


def opt_str(
    body: Mapping[str, Any], key: str, default: str | None = None, *, max_len: int = 10_000
) -> str | None:
    """Return an optional string field (400 when present but not a string or too long)."""
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"{key} must be a string")
    if len(value) > max_len:
        raise ApiError(400, "invalid_field", f"{key} is longer than {max_len} characters")
    return value


#: Largest integer a SQLite column holds; anything larger would fail in the database, not at the API edge.
MAX_SQLITE_INT = 2**63 - 1


def opt_int(
    body: Mapping[str, Any], key: str, *, minimum: int = 0, maximum: int = MAX_SQLITE_INT
) -> int | None:
    """Return an optional integer field (400 when present but not an integer in ``minimum..maximum``)."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ApiError(400, "invalid_field", f"{key} must be an integer between {minimum} and {maximum}")
    return value


def opt_bool(body: Mapping[str, Any], key: str) -> bool | None:
    """Return an optional boolean field (400 when present but not a boolean)."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ApiError(400, "invalid_field", f"{key} must be a boolean")
    return value


def str_map(body: Mapping[str, Any], key: str) -> dict[str, str] | None:
    """Return an optional ``{str: str}`` field such as commit metadata (400 otherwise)."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ApiError(400, "invalid_field", f"{key} must be an object of string values")
    return dict(value)


#: Longest group or policy name.
MAX_DISPLAY_NAME = 200


def display_name(value: Any) -> str:
    """Return a group or policy name: a non-empty string of at most `MAX_DISPLAY_NAME` characters (400)."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_DISPLAY_NAME:
        raise ApiError(
            400, "invalid_field", f"name must be a non-empty string of at most {MAX_DISPLAY_NAME} characters"
        )
    return value


def principal_ref(source: Mapping[str, Any], prefix: str, types: tuple[str, ...]) -> tuple[str, str]:
    """Return ``(type, id)`` from ``<prefix>_type`` and ``<prefix>_id`` of a body or a query (400 if bad).

    Args:
        source: The decoded body or the query parameters.
        prefix: ``"subject"`` (group members) or ``"principal"`` (attachments, effective-*).
        types: The allowed types.

    """
    kind, ref_id = source.get(f"{prefix}_type"), source.get(f"{prefix}_id")
    if not isinstance(kind, str) or kind not in types:
        raise ApiError(400, "invalid_field", f"{prefix}_type must be one of {', '.join(types)}")
    if not isinstance(ref_id, str) or not ref_id:
        raise ApiError(400, "invalid_field", f"{prefix}_id is required")
    return kind, ref_id
