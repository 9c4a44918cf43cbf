"""Names and ids that go into URL paths: checked before any request, then percent-encoded.

A value put into a path unchecked can name a different endpoint: ``organizations.get("acme/repositories")``
would ask for the repository list, ``repository("acme/da?ta")`` for repository ``da``. Every resource layer
therefore checks what the caller passes against the patterns the server accepts (CONTRACT §0; no stricter than
the server, so no name it accepts is refused here) and builds paths with `segment`, which percent-encodes
whatever it is given.

Patterns:

- organizations, roles, agents: ``[a-z0-9][a-z0-9-]{1,62}``
- repositories: ``[a-z0-9][a-z0-9_-]{1,62}`` (the server also accepts underscores)
- secret keys: ``[A-Za-z_][A-Za-z0-9_-]{0,255}``
- ids of sessions, sandboxes, groups, policies, connectors, triggers, import jobs and users: UUIDs
  (``8-4-4-4-12`` hexadecimal digits, either case). Commit ids and API key ids are not UUIDs and are only
  encoded.

Example:
    >>> check_org("acme")
    'acme'
    >>> segment("a/b?c")
    'a%2Fb%3Fc'

"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

__all__ = [
    "NAME_PATTERN",
    "REPOSITORY_NAME_PATTERN",
    "SECRET_KEY_PATTERN",
    "UUID_PATTERN",
    "check_agent",
    "check_id",
    "check_org",
    "check_repository",
    "check_role",
    "check_secret_key",
    "check_uuid",
    "segment",
]

#: Organization, role and agent names.
NAME_PATTERN = r"[a-z0-9][a-z0-9-]{1,62}"
#: Repository names.
REPOSITORY_NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{1,62}"
#: Secret keys (repository and agent secrets).
SECRET_KEY_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]{0,255}"
#: Ids the contract says are UUIDs.
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

_NAME = re.compile(NAME_PATTERN)
_REPOSITORY = re.compile(REPOSITORY_NAME_PATTERN)
_SECRET_KEY = re.compile(SECRET_KEY_PATTERN)
_UUID = re.compile(UUID_PATTERN)


def _check(value: Any, pattern: re.Pattern[str], what: str) -> str:
    # fullmatch, not match with "$": "$" also matches before a trailing newline.
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ValueError(f"invalid {what} {value!r}: expected a string matching {pattern.pattern}")
    return value


def check_org(name: Any) -> str:
    """Return ``name`` when it is a valid organization name.

    Args:
        name: The organization name.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: Not a string matching `NAME_PATTERN`.

    """
    return _check(name, _NAME, "organization name")


def check_repository(name: Any) -> str:
    """Return ``name`` when it is a valid repository name.

    Args:
        name: The repository name (without the organization).

    Returns:
        The name, unchanged.

    Raises:
        ValueError: Not a string matching `REPOSITORY_NAME_PATTERN`.

    """
    return _check(name, _REPOSITORY, "repository name")


def check_role(name: Any) -> str:
    """Return ``name`` when it is a valid role name.

    Args:
        name: The role name.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: Not a string matching `NAME_PATTERN`.

    """
    return _check(name, _NAME, "role name")


def check_agent(name: Any) -> str:
    """Return ``name`` when it is a valid agent name.

    Args:
        name: The agent name.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: Not a string matching `NAME_PATTERN`.

    """
    return _check(name, _NAME, "agent name")


def check_secret_key(key: Any) -> str:
    """Return ``key`` when it is a valid secret key.

    Args:
        key: The secret's key.

    Returns:
        The key, unchanged.

    Raises:
        ValueError: Not a string matching `SECRET_KEY_PATTERN`.

    """
    return _check(key, _SECRET_KEY, "secret key")


def check_uuid(value: Any, what: str) -> str:
    """Return ``value`` when it is UUID-shaped (the ids of sessions, sandboxes, groups, policies, ...).

    Args:
        value: The id.
        what: What the id names, for the message (``"session id"``).

    Returns:
        The id, unchanged.

    Raises:
        ValueError: Not a string in the ``8-4-4-4-12`` hexadecimal form.

    """
    return _check(value, _UUID, what)


def check_id(value: Any, what: str) -> str:
    """Return ``value`` when it can be an opaque id in a path (commit ids, API key ids): a non-empty string.

    Args:
        value: The id.
        what: What the id names, for the message (``"commit id"``).

    Returns:
        The id, unchanged (encode it with `segment`).

    Raises:
        ValueError: Not a non-empty string, or made of dots only (``.``/``..`` would walk up the path).

    """
    if not isinstance(value, str) or not value or not value.strip(".") or value != value.strip():
        raise ValueError(f"invalid {what} {value!r}: expected a non-empty id")
    return value


def segment(value: str) -> str:
    """Percent-encode ``value`` as one URL path segment (``/``, ``?``, ``#``, ``%`` … all encoded).

    Args:
        value: The checked name or id.

    Returns:
        The encoded segment.

    """
    return quote(value, safe="")
