"""What the IAM stores share: the change counter and principals looked up by id."""

from __future__ import annotations

import threading

from tilde.server._db import SqliteStore
from tilde.server.errors import ApiError

__all__ = ["PRINCIPAL_TYPES", "IamBase"]

#: Principal (and group-member subject) types.
PRINCIPAL_TYPES = ("user", "group", "role", "agent")


def _check_type(value: str, what: str) -> None:
    if value not in PRINCIPAL_TYPES:
        raise ApiError(400, "invalid_field", f"{what} must be one of {', '.join(PRINCIPAL_TYPES)}")


class IamBase(SqliteStore):
    """The IAM change counter and principal lookups (base of the IAM stores)."""

    _generation = 0
    _generation_lock = threading.Lock()

    @property
    def iam_generation(self) -> int:
        """A counter bumped by every change to who may do what (memberships, groups, policies, ...)."""
        return self._generation

    def bump_iam_generation(self) -> None:
        """Tell caches that IAM data changed (callers changing principals outside this class call it)."""
        with self._generation_lock:
            self._generation += 1

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
