"""Human users of the registry: created by ``tilde-server user create``, found by name.

Users live in the registry's ``users`` table. These functions work on an open `Registry`, so the command
line can use them on a data directory a running server also has open (SQLite in WAL mode serialises the
writes).
"""

from __future__ import annotations

import re
import sqlite3

from tilde.server._ids import new_id, utc_now
from tilde.server.errors import ApiError
from tilde.server.registry import Registry, UserRecord

__all__ = ["USERNAME_RE", "create_user", "find_user", "has_live_key", "list_users"]

#: User names: what organization members are added by (``POST O/members {username}``).
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\Z")


def create_user(registry: Registry, username: str, *, email: str = "", full_name: str = "") -> UserRecord:
    """Create a user.

    Args:
        registry: The open registry.
        username: A new, unique user name matching `USERNAME_RE`.
        email: Optional e-mail address.
        full_name: Optional display name.

    Raises:
        ApiError: 400 for an invalid name or e-mail address, 409 when the name is taken.

    """
    if not USERNAME_RE.match(username):
        raise ApiError(400, "invalid_name", f"user names must match {USERNAME_RE.pattern}")
    if email and not _EMAIL_RE.match(email):
        raise ApiError(400, "invalid_field", f"{email!r} is not an e-mail address")
    if len(full_name) > 200:
        raise ApiError(400, "invalid_field", "full names are limited to 200 characters")
    user = UserRecord(new_id(), username, full_name, email, utc_now())
    try:
        with registry._tx() as db:
            db.execute(
                "INSERT INTO users (id, username, full_name, email, created_at) VALUES (?, ?, ?, ?, ?)",
                (user.id, user.username, user.full_name, user.email, user.created_at),
            )
    except sqlite3.IntegrityError:
        raise ApiError(409, "already_exists", f"user {username!r} already exists") from None
    return user


def find_user(registry: Registry, username: str) -> UserRecord | None:
    """Return the user called ``username``, or None."""
    row = registry._one(
        "SELECT id, username, full_name, email, created_at FROM users WHERE username = ?", username
    )
    return UserRecord(**dict(row)) if row else None


def list_users(registry: Registry) -> list[UserRecord]:
    """Return every user, by name."""
    rows = registry._all("SELECT id, username, full_name, email, created_at FROM users ORDER BY username")
    return [UserRecord(**dict(row)) for row in rows]


def has_live_key(registry: Registry, user_id: str) -> bool:
    """Tell whether the user has an API key that is not revoked."""
    row = registry._one(
        "SELECT 1 FROM api_keys WHERE principal_type = 'user' AND principal_id = ? AND revoked_at IS NULL",
        user_id,
    )
    return row is not None
