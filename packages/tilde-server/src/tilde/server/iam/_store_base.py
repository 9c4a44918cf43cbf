"""What the IAM stores share: the change counter and principals looked up by id."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from tilde.server._db import Connection, SqliteStore
from tilde.server.errors import ApiError

if TYPE_CHECKING:
    from tilde.server.iam._generation import SharedGeneration

__all__ = ["PRINCIPAL_TYPES", "IamBase"]

#: Principal (and group-member subject) types.
PRINCIPAL_TYPES = ("user", "group", "role", "agent")


def _check_type(value: str, what: str) -> None:
    if value not in PRINCIPAL_TYPES:
        raise ApiError(400, "invalid_field", f"{what} must be one of {', '.join(PRINCIPAL_TYPES)}")


class IamBase(SqliteStore):
    """The IAM change counter and principal lookups (base of the IAM stores).

    On SQLite the counter lives in memory: this process is the only one changing the registry. On PostgreSQL
    the replicas of a cluster share it (`tilde.server.iam._generation`): changes increment a row, and
    `refresh_iam_generation`, called once per request before authenticating, moves the local counter when
    the row moved, whichever replica made the change.
    """

    _generation = 0
    _generation_lock = threading.Lock()
    _shared_generation: SharedGeneration | None = None
    _seen_shared = -1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.dialect == "postgres":
            from tilde.server.iam._generation import SharedGeneration

            self._shared_generation = SharedGeneration(self._pg)
            self._seen_shared = self._shared_generation.read()

    @property
    def iam_generation(self) -> int:
        """A counter bumped by every change to who may do what (memberships, groups, policies, ...)."""
        return self._generation

    def refresh_iam_generation(self) -> int:
        """Return `iam_generation` after taking in changes other replicas made (PostgreSQL: one query).

        Raises:
            tilde.server._db.DatabaseUnavailable: PostgreSQL cannot be reached.

        """
        shared = self._shared_generation
        if shared is not None:
            value = shared.read()
            with self._generation_lock:
                if value != self._seen_shared:
                    self._seen_shared = value
                    self._generation += 1
        return self._generation

    def bump_iam_generation(self, db: Connection | None = None) -> None:
        """Tell caches that IAM data changed (callers changing principals outside this class call it).

        Args:
            db: The transaction that made the change, when it has not committed yet: on PostgreSQL the
                shared counter then moves with it, so no replica can see the change without the new counter.
                None increments it right away (after the change committed).

        """
        if self._shared_generation is not None:
            self._shared_generation.bump(db)
        with self._generation_lock:
            self._generation += 1

    def close(self) -> None:
        """Close the store (and, on PostgreSQL, the connection reading the shared counter)."""
        if self._shared_generation is not None:
            self._shared_generation.close()
        super().close()

    # -- principals by id ---------------------------------------------------------------------------

    def principal_name(self, org_id: str, principal_type: str, principal_id: str) -> str | None:
        """Return the name of a user (a member), group, role or agent of the organization, or None."""
        if principal_type == "user":
            row = self._one(
                "SELECT u.username FROM users u JOIN memberships m ON m.user_id = u.id "
                "WHERE u.id = ? AND m.org_id = ?",
                principal_id,
                org_id,
            )
        elif principal_type in ("group", "role", "agent"):
            table = {"group": "iam_groups", "role": "roles", "agent": "agents"}[principal_type]
            row = self._one(f"SELECT name FROM {table} WHERE id = ? AND org_id = ?", principal_id, org_id)
        else:
            return None
        return str(row[0]) if row else None

    def require_principal_name(self, org_id: str, principal_type: str, principal_id: str) -> str:
        """Like `principal_name`, but 400 for an unknown type and 404 when nobody has the id here."""
        _check_type(principal_type, "principal_type")
        name = self.principal_name(org_id, principal_type, principal_id)
        if name is None:
            raise ApiError(
                404, "not_found", f"no {principal_type} with id {principal_id!r} in this organization"
            )
        return name
