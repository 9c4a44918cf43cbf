"""Policies and their attachments: the policy half of `tilde.server.iam.store.IamStore`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from tilde.server._ids import new_id, utc_now
from tilde.server.errors import ApiError
from tilde.server.iam._store_base import IamBase

__all__ = ["AttachmentRecord", "PolicyRecord", "PolicyStore", "PolicySummaryRecord"]


@dataclass(frozen=True)
class PolicyRecord:
    """A policy; fields are the contract's Policy, one for one."""

    id: str
    organization_id: str
    name: str
    description: str
    policy_text: str
    is_builtin: bool
    created_by_type: str
    created_by: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class PolicySummaryRecord:
    """A policy in a listing; fields are the contract's PolicySummary, one for one."""

    id: str
    organization_id: str
    name: str
    description: str
    is_builtin: bool
    created_at: str
    updated_at: str
    attachment_count: int


@dataclass(frozen=True)
class AttachmentRecord:
    """A policy attached to a principal; fields are the contract's AttachmentRecord, one for one."""

    policy_id: str
    policy_name: str
    is_builtin: bool
    principal_type: str
    principal_id: str
    principal_name: str
    attached_by_type: str
    attached_by: str
    attached_at: str


_POLICY_COLUMNS = (
    "id, org_id AS organization_id, name, description, policy_text, is_builtin, created_by_type, created_by, "
    "created_at, updated_at"
)


def _policy(row: sqlite3.Row) -> PolicyRecord:
    values = dict(row)
    values["is_builtin"] = bool(values["is_builtin"])
    return PolicyRecord(**values)


class PolicyStore(IamBase):
    """Policies and attachments (the IAM tables are created by the registry's schema)."""

    # -- policies -----------------------------------------------------------------------------------

    def create_policy(
        self,
        org_id: str,
        name: str,
        description: str,
        policy_text: str,
        creator: tuple[str, str],
        *,
        is_builtin: bool = False,
    ) -> PolicyRecord:
        """Store a validated policy (duplicate name in the organization → 409)."""
        policy_id = new_id()
        now = utc_now()
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO iam_policies (id, org_id, name, description, policy_text, is_builtin, "
                    "created_by_type, created_by, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (policy_id, org_id, name, description, policy_text, int(is_builtin), *creator, now, now),
                )
        except sqlite3.IntegrityError:
            raise ApiError(409, "already_exists", f"policy {name!r} already exists") from None
        return self.get_policy(org_id, policy_id)

    def seed_builtin_policies(self, org_id: str, builtins: Iterable[tuple[str, str, str]]) -> None:
        """Give an organization the built-in policies it lacks (``(name, description, text)`` each).

        An existing built-in keeps its id (attachments refer to it) but takes the current text.
        """
        now = utc_now()
        with self._tx() as db:
            for name, description, text in builtins:
                row = db.execute(
                    "SELECT id FROM iam_policies WHERE org_id = ? AND name = ? AND is_builtin = 1",
                    (org_id, name),
                ).fetchone()
                if row is None:
                    db.execute(
                        "INSERT OR IGNORE INTO iam_policies (id, org_id, name, description, policy_text, "
                        "is_builtin, created_by_type, created_by, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, 1, 'system', 'system', ?, ?)",
                        (new_id(), org_id, name, description, text, now, now),
                    )
                else:
                    db.execute(
                        "UPDATE iam_policies SET description = ?, policy_text = ? WHERE id = ? "
                        "AND (description != ? OR policy_text != ?)",
                        (description, text, row[0], description, text),
                    )
        self.bump_iam_generation()

    def get_policy(self, org_id: str, policy_id: str) -> PolicyRecord:
        """Return a policy of the organization (404 otherwise)."""
        row = self._one(
            f"SELECT {_POLICY_COLUMNS} FROM iam_policies WHERE id = ? AND org_id = ?", policy_id, org_id
        )
        if row is None:
            raise ApiError(404, "not_found", f"policy {policy_id!r} not found")
        return _policy(row)

    def list_policies(
        self, org_id: str, after: str | None, limit: int
    ) -> tuple[list[PolicySummaryRecord], bool]:
        """Return a page of the organization's policy summaries by name, strictly after ``after``."""
        items, more = self._page(
            "SELECT p.id, p.org_id AS organization_id, p.name, p.description, p.is_builtin, p.created_at, "
            "p.updated_at, "
            "(SELECT COUNT(*) FROM iam_attachments a WHERE a.policy_id = p.id) AS attachment_count "
            "FROM iam_policies p WHERE p.org_id = ? AND p.name > ? ORDER BY p.name LIMIT ?",
            org_id,
            after or "",
            limit=limit,
        )
        summaries = []
        for row in items:
            values = dict(row)
            values["is_builtin"] = bool(values["is_builtin"])
            summaries.append(PolicySummaryRecord(**values))
        return summaries, more

    def update_policy(self, org_id: str, policy_id: str, changes: dict[str, str]) -> PolicyRecord:
        """Apply validated changes (``name``, ``description``, ``policy_text``); built-ins → 400."""
        policy = self.get_policy(org_id, policy_id)
        if policy.is_builtin:
            raise ApiError(400, "builtin_policy", f"the built-in policy {policy.name!r} cannot be changed")
        if changes:
            columns = ", ".join(f"{name} = ?" for name in changes)
            try:
                with self._tx() as db:
                    db.execute(
                        f"UPDATE iam_policies SET {columns}, updated_at = ? WHERE id = ?",
                        (*changes.values(), utc_now(), policy_id),
                    )
                    self.bump_iam_generation(db)
            except sqlite3.IntegrityError:
                raise ApiError(
                    409, "already_exists", f"policy {changes.get('name')!r} already exists"
                ) from None
        return self.get_policy(org_id, policy_id)

    def delete_policy(self, org_id: str, policy_id: str) -> None:
        """Delete a policy and its attachments; built-ins → 400."""
        policy = self.get_policy(org_id, policy_id)
        if policy.is_builtin:
            raise ApiError(400, "builtin_policy", f"the built-in policy {policy.name!r} cannot be deleted")
        with self._tx() as db:
            db.execute("DELETE FROM iam_policies WHERE id = ?", (policy_id,))
            db.execute("DELETE FROM iam_attachments WHERE policy_id = ?", (policy_id,))
            self.bump_iam_generation(db)

    # -- attachments --------------------------------------------------------------------------------

    def attach_policy(
        self, org_id: str, policy_id: str, principal_type: str, principal_id: str, by: tuple[str, str]
    ) -> None:
        """Attach a policy to a user, group, role or agent of the organization (404 for unknown ones)."""
        self.get_policy(org_id, policy_id)
        self.require_principal_name(org_id, principal_type, principal_id)
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO iam_attachments (policy_id, principal_type, principal_id, "
                "attached_by_type, attached_by, attached_at) VALUES (?, ?, ?, ?, ?, ?)",
                (policy_id, principal_type, principal_id, *by, utc_now()),
            )
            self.bump_iam_generation(db)

    def detach_policy(self, org_id: str, policy_id: str, principal_type: str, principal_id: str) -> None:
        """Detach a policy (404 when the policy, the principal or the attachment is unknown)."""
        self.get_policy(org_id, policy_id)
        self.require_principal_name(org_id, principal_type, principal_id)
        with self._tx() as db:
            removed = db.execute(
                "DELETE FROM iam_attachments WHERE policy_id = ? AND principal_type = ? AND principal_id = ?",
                (policy_id, principal_type, principal_id),
            ).rowcount
            if removed:
                self.bump_iam_generation(db)
        if not removed:
            raise ApiError(404, "not_found", "the policy is not attached to that principal")

    def list_attachments(
        self,
        org_id: str,
        *,
        policy_id: str | None = None,
        principal: tuple[str, str] | None = None,
    ) -> list[AttachmentRecord]:
        """Return the organization's attachments, optionally of one policy or to one principal."""
        sql = (
            "SELECT a.policy_id, p.name AS policy_name, p.is_builtin, a.principal_type, a.principal_id, "
            "a.attached_by_type, a.attached_by, a.attached_at FROM iam_attachments a "
            "JOIN iam_policies p ON p.id = a.policy_id WHERE p.org_id = ?"
        )
        args: list[str] = [org_id]
        if policy_id is not None:
            sql += " AND a.policy_id = ?"
            args.append(policy_id)
        if principal is not None:
            sql += " AND a.principal_type = ? AND a.principal_id = ?"
            args.extend(principal)
        rows = self._all(sql + " ORDER BY p.name, a.attached_at", *args)
        return [
            AttachmentRecord(
                policy_id=row["policy_id"],
                policy_name=row["policy_name"],
                is_builtin=bool(row["is_builtin"]),
                principal_type=row["principal_type"],
                principal_id=row["principal_id"],
                principal_name=self.principal_name(org_id, row["principal_type"], row["principal_id"]) or "",
                attached_by_type=row["attached_by_type"],
                attached_by=row["attached_by"],
                attached_at=row["attached_at"],
            )
            for row in rows
        ]

    def attached_policy_texts(self, org_id: str, principals: Iterable[tuple[str, str]]) -> list[PolicyRecord]:
        """Return the organization's policies attached to any of ``principals`` (each once)."""
        found: dict[str, PolicyRecord] = {}
        for kind, principal_id in principals:
            for row in self._all(
                f"SELECT {', '.join('p.' + c.strip() for c in _POLICY_COLUMNS.split(','))} "
                "FROM iam_attachments a JOIN iam_policies p ON p.id = a.policy_id "
                "WHERE a.principal_type = ? AND a.principal_id = ? AND p.org_id = ?",
                kind,
                principal_id,
                org_id,
            ):
                found.setdefault(row["id"], _policy(row))
        return list(found.values())
