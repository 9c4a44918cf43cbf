"""The IAM half of the registry: owners, groups, group members, policies and their attachments.

The tables live in the registry's SQLite file (`tilde.server.registry.Registry` mixes `IamStore` in), so a
principal's deletion and the removal of its memberships and attachments share one database. Every write that
can change what somebody may do bumps `IamStore.iam_generation`; the authorizer's cache compares it to drop
stale entries, which is cheaper than tracking which principals a change touches.

Domain failures raise `ApiError` (400/404/409): every caller is an HTTP handler.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from tilde.server._ids import new_id, utc_now
from tilde.server.errors import ApiError
from tilde.server.iam._store_base import PRINCIPAL_TYPES
from tilde.server.iam._store_policies import (
    AttachmentRecord,
    PolicyRecord,
    PolicyStore,
    PolicySummaryRecord,
)

__all__ = [
    "IAM_SCHEMA",
    "PRINCIPAL_TYPES",
    "AttachmentRecord",
    "EffectiveGroupRecord",
    "GroupMemberRecord",
    "GroupRecord",
    "IamStore",
    "PolicyRecord",
    "PolicySummaryRecord",
]

IAM_SCHEMA = """
CREATE TABLE IF NOT EXISTS iam_groups (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    created_by_type TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (org_id, name));
CREATE TABLE IF NOT EXISTS iam_group_members (
    group_id TEXT NOT NULL, subject_type TEXT NOT NULL, subject_id TEXT NOT NULL, added_at TEXT NOT NULL,
    PRIMARY KEY (group_id, subject_type, subject_id));
CREATE INDEX IF NOT EXISTS iam_group_members_subject ON iam_group_members(subject_type, subject_id);
CREATE TABLE IF NOT EXISTS iam_policies (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    policy_text TEXT NOT NULL, is_builtin INTEGER NOT NULL DEFAULT 0, created_by_type TEXT NOT NULL,
    created_by TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, UNIQUE (org_id, name));
CREATE TABLE IF NOT EXISTS iam_attachments (
    policy_id TEXT NOT NULL, principal_type TEXT NOT NULL, principal_id TEXT NOT NULL,
    attached_by_type TEXT NOT NULL, attached_by TEXT NOT NULL, attached_at TEXT NOT NULL,
    PRIMARY KEY (policy_id, principal_type, principal_id));
CREATE INDEX IF NOT EXISTS iam_attachments_principal ON iam_attachments(principal_type, principal_id);
"""


@dataclass(frozen=True)
class GroupRecord:
    """A group; fields are the contract's Group, one for one."""

    id: str
    organization_id: str
    name: str
    description: str
    created_by_type: str
    created_by: str
    created_at: str


@dataclass(frozen=True)
class GroupMemberRecord:
    """A member of a group; fields are the contract's GroupMember, one for one."""

    subject_type: str
    subject_id: str
    display_name: str
    username: str
    added_at: str


@dataclass(frozen=True)
class EffectiveGroupRecord:
    """A group a principal belongs to; fields are the contract's EffectiveGroup, one for one.

    ``source`` is ``direct`` for a group the principal is a member of, ``group`` for one reached through
    another group (named by ``source_name``).
    """

    group_id: str
    group_name: str
    description: str
    source: str
    source_name: str


_GROUP_COLUMNS = "id, org_id AS organization_id, name, description, created_by_type, created_by, created_at"


class IamStore(PolicyStore):
    """Owners, groups, policies and attachments (mixed into `tilde.server.registry.Registry`)."""

    # -- owners -------------------------------------------------------------------------------------

    def is_owner(self, org_id: str, user_id: str) -> bool:
        """Whether the user owns the organization (its creator; not counting the server's admin)."""
        row = self._one(
            "SELECT 1 FROM memberships WHERE org_id = ? AND user_id = ? AND role = 'owner'", org_id, user_id
        )
        return row is not None

    # -- groups -------------------------------------------------------------------------------------

    def create_group(self, org_id: str, name: str, description: str, creator: tuple[str, str]) -> GroupRecord:
        """Create a group (duplicate name in the organization → 409)."""
        group_id = new_id()
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO iam_groups (id, org_id, name, description, created_by_type, created_by, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (group_id, org_id, name, description, *creator, utc_now()),
                )
        except sqlite3.IntegrityError:
            raise ApiError(409, "already_exists", f"group {name!r} already exists") from None
        return self.get_group(org_id, group_id)

    def get_group(self, org_id: str, group_id: str) -> GroupRecord:
        """Return a group of the organization (404 otherwise)."""
        row = self._one(
            f"SELECT {_GROUP_COLUMNS} FROM iam_groups WHERE id = ? AND org_id = ?", group_id, org_id
        )
        if row is None:
            raise ApiError(404, "not_found", f"group {group_id!r} not found")
        return GroupRecord(**dict(row))

    def list_groups(self, org_id: str, after: str | None, limit: int) -> tuple[list[GroupRecord], bool]:
        """Return a page of the organization's groups by name, strictly after ``after``."""
        items, more = self._page(
            f"SELECT {_GROUP_COLUMNS} FROM iam_groups WHERE org_id = ? AND name > ? ORDER BY name LIMIT ?",
            org_id,
            after or "",
            limit=limit,
        )
        return [GroupRecord(**dict(r)) for r in items], more

    def update_group(
        self, org_id: str, group_id: str, name: str | None, description: str | None
    ) -> GroupRecord:
        """Rename or re-describe a group (a taken name → 409)."""
        self.get_group(org_id, group_id)
        try:
            with self._tx() as db:
                if name is not None:
                    db.execute("UPDATE iam_groups SET name = ? WHERE id = ?", (name, group_id))
                if description is not None:
                    db.execute("UPDATE iam_groups SET description = ? WHERE id = ?", (description, group_id))
        except sqlite3.IntegrityError:
            raise ApiError(409, "already_exists", f"group {name!r} already exists") from None
        return self.get_group(org_id, group_id)

    def delete_group(self, org_id: str, group_id: str) -> None:
        """Delete a group, its memberships (as a group and as a member of others) and its attachments."""
        self.get_group(org_id, group_id)
        with self._tx() as db:
            db.execute("DELETE FROM iam_groups WHERE id = ?", (group_id,))
            db.execute("DELETE FROM iam_group_members WHERE group_id = ?", (group_id,))
            self._forget_subject(db, "group", group_id, org_id)
            self.bump_iam_generation(db)

    def _forget_subject(self, db: sqlite3.Connection, kind: str, subject_id: str, org_id: str | None) -> None:
        """Drop a principal's group memberships and attachments (within one organization when given)."""
        group_filter = (
            "" if org_id is None else " AND group_id IN (SELECT id FROM iam_groups WHERE org_id = ?)"
        )
        policy_filter = (
            "" if org_id is None else " AND policy_id IN (SELECT id FROM iam_policies WHERE org_id = ?)"
        )
        extra = () if org_id is None else (org_id,)
        db.execute(
            "DELETE FROM iam_group_members WHERE subject_type = ? AND subject_id = ?" + group_filter,
            (kind, subject_id, *extra),
        )
        db.execute(
            "DELETE FROM iam_attachments WHERE principal_type = ? AND principal_id = ?" + policy_filter,
            (kind, subject_id, *extra),
        )

    def forget_principal(self, kind: str, principal_id: str, org_id: str | None = None) -> None:
        """Remove a deleted agent or role (or a user leaving ``org_id``) from groups and attachments."""
        with self._tx() as db:
            self._forget_subject(db, kind, principal_id, org_id)
            self.bump_iam_generation(db)

    # -- group members ------------------------------------------------------------------------------

    def add_group_member(self, org_id: str, group_id: str, subject_type: str, subject_id: str) -> None:
        """Add a user, group, role or agent of the organization to a group.

        400 for an unknown subject type or a group that would (indirectly) contain itself; 404 when the
        group or the subject is not in the organization. Adding an existing member changes nothing.
        """
        self.get_group(org_id, group_id)
        self.require_principal_name(org_id, subject_type, subject_id)
        if subject_type == "group" and (
            subject_id == group_id or group_id in self._descendant_groups(subject_id)
        ):
            raise ApiError(
                400, "group_cycle", "a group cannot contain itself, directly or through other groups"
            )
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO iam_group_members (group_id, subject_type, subject_id, added_at) "
                "VALUES (?, ?, ?, ?)",
                (group_id, subject_type, subject_id, utc_now()),
            )
            self.bump_iam_generation(db)

    def _descendant_groups(self, group_id: str) -> set[str]:
        """Every group nested (at any depth) inside ``group_id``."""
        seen: set[str] = set()
        frontier = [group_id]
        while frontier:
            current = frontier.pop()
            for row in self._all(
                "SELECT subject_id FROM iam_group_members WHERE group_id = ? AND subject_type = 'group'",
                current,
            ):
                child = str(row[0])
                if child not in seen:
                    seen.add(child)
                    frontier.append(child)
        return seen

    def remove_group_member(self, org_id: str, group_id: str, subject_type: str, subject_id: str) -> None:
        """Remove a member from a group (404 when it is not one)."""
        self.get_group(org_id, group_id)
        with self._tx() as db:
            removed = db.execute(
                "DELETE FROM iam_group_members WHERE group_id = ? AND subject_type = ? AND subject_id = ?",
                (group_id, subject_type, subject_id),
            ).rowcount
            if removed:
                self.bump_iam_generation(db)
        if not removed:
            raise ApiError(404, "not_found", f"{subject_type} {subject_id!r} is not a member of this group")

    def list_group_members(self, org_id: str, group_id: str) -> list[GroupMemberRecord]:
        """Return the members of a group, in the order they were added."""
        rows = self._all(
            "SELECT subject_type, subject_id, added_at FROM iam_group_members WHERE group_id = ? "
            "ORDER BY added_at, subject_type, subject_id",
            group_id,
        )
        members = []
        for row in rows:
            kind, subject_id = row["subject_type"], row["subject_id"]
            name = self.principal_name(org_id, kind, subject_id) or ""
            username = name if kind == "user" else ""
            display = name
            if kind == "user":
                user = self._one("SELECT full_name FROM users WHERE id = ?", subject_id)
                display = (user[0] if user else "") or name
            members.append(GroupMemberRecord(kind, subject_id, display, username, row["added_at"]))
        return members

    def effective_groups(
        self, org_id: str, principal_type: str, principal_id: str
    ) -> list[EffectiveGroupRecord]:
        """Every group of the organization the principal belongs to, directly or through nested groups."""
        direct = self._all(
            "SELECT g.id, g.name, g.description FROM iam_group_members m "
            "JOIN iam_groups g ON g.id = m.group_id "
            "WHERE m.subject_type = ? AND m.subject_id = ? AND g.org_id = ? ORDER BY g.name",
            principal_type,
            principal_id,
            org_id,
        )
        found: dict[str, EffectiveGroupRecord] = {}
        frontier: list[tuple[str, str]] = []
        for row in direct:
            found[row["id"]] = EffectiveGroupRecord(row["id"], row["name"], row["description"], "direct", "")
            frontier.append((row["id"], row["name"]))
        while frontier:
            child_id, child_name = frontier.pop(0)
            for row in self._all(
                "SELECT g.id, g.name, g.description FROM iam_group_members m "
                "JOIN iam_groups g ON g.id = m.group_id "
                "WHERE m.subject_type = 'group' AND m.subject_id = ? ORDER BY g.name",
                child_id,
            ):
                if row["id"] not in found:
                    found[row["id"]] = EffectiveGroupRecord(
                        row["id"], row["name"], row["description"], "group", child_name
                    )
                    frontier.append((row["id"], row["name"]))
        return list(found.values())
