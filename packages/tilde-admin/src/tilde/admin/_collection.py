"""Plumbing shared by the org-scoped collections and their entities (groups, policies, roles, agents, …).

Each resource module keeps its public classes, docstrings and validation; what is the same everywhere (the
collection paths, building an entity from the body a ``GET``/``POST``/``PUT`` answers, sending only the given
fields of an update, unwrapping ``{group: ...}``-style bodies) lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from tilde.core.names import segment

if TYPE_CHECKING:
    import tilde.core

T = TypeVar("T")

Build = Callable[[Mapping[str, Any]], T]


def org_path(org: str, collection: str) -> str:
    """Return the path of an organization's collection, e.g. ``/organizations/acme/groups``.

    Args:
        org: The organization's name (percent-encoded here).
        collection: The collection's path below the organization, sent as given.

    Returns:
        The path.

    """
    return f"/organizations/{segment(org)}/{collection}"


def item_path(collection_path: str, key: str) -> str:
    """Return the path of one item of a collection (``key`` percent-encoded; check it before).

    Args:
        collection_path: The collection's path.
        key: The item's checked name or id.

    Returns:
        The path.

    """
    return f"{collection_path}/{segment(key)}"


def fetch(client: tilde.core.Client, path: str, build: Build[T]) -> T:
    """``GET`` an object and build the entity from it.

    Args:
        client: The client to send the request with.
        path: The object's path.
        build: Builds the entity from the decoded body.

    Returns:
        The entity.

    """
    return build(client._get_json(path))


def post(client: tilde.core.Client, path: str, body: Mapping[str, Any], build: Build[T]) -> T:
    """``POST`` a body and build the entity from the answer (an empty answer builds from ``{}``).

    Args:
        client: The client to send the request with.
        path: The collection's path.
        body: The JSON body.
        build: Builds the entity from the decoded answer.

    Returns:
        The entity.

    """
    return build(client._post_json(path, json=body) or {})


def put(client: tilde.core.Client, path: str, body: Mapping[str, Any], build: Build[T]) -> T:
    """``PUT`` a body and build a new entity from the answer (an empty answer builds from ``{}``).

    Args:
        client: The client to send the request with.
        path: The object's path.
        body: The JSON body.
        build: Builds the entity from the decoded answer.

    Returns:
        The new entity.

    """
    return build(client._put_json(path, json=body) or {})


def given(**fields: Any) -> dict[str, Any]:
    """Return the fields whose value is not ``None`` (what an update or a filter sends).

    Args:
        **fields: The fields, ``None`` for those not given.

    Returns:
        The given fields, in order.

    """
    return {key: value for key, value in fields.items() if value is not None}


def unwrap(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """Return ``data[key]`` when it is an object (a ``{group: ..., members: ...}`` body), else ``data``.

    Args:
        data: The decoded JSON object.
        key: The name of the wrapped object.

    Returns:
        The entity's own object.

    """
    wrapped = data.get(key)
    return wrapped if isinstance(wrapped, Mapping) else data
