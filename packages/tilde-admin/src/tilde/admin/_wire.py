"""Small readers for the JSON arrays in admin responses (shared by the IAM modules)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def mappings(value: object) -> list[Mapping[str, Any]]:
    """Return the object items of a JSON array; anything else in it, or a value that is no array, is dropped.

    Args:
        value: A decoded JSON value.

    Returns:
        The mapping items, in order.

    """
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def results(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Return the items of a single-shot ``{"results": [...]}`` body.

    Args:
        body: The decoded response object.

    Returns:
        The mapping items of ``results``.

    """
    return mappings(body.get("results"))
