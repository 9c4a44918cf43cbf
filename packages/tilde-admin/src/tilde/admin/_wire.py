"""Small readers for the JSON arrays in admin responses (shared by the IAM modules)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


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


def built(value: object, build: Callable[[Mapping[str, Any]], T]) -> list[T]:
    """Build one item from each object of a JSON array (what `mappings` keeps).

    Args:
        value: A decoded JSON value.
        build: Builds an item from one object.

    Returns:
        The built items, in order.

    """
    return [build(item) for item in mappings(value)]
