"""The registry: organizations, repositories, users, agents, roles, memberships and API keys.

It lives in its own SQLite file (``registry.sqlite3`` in the data directory), apart from the storage
engine, which only knows opaque repository ids. Names are unique among live rows (partial unique indexes),
so a deleted repository's name can be reused. Calls are short and serialised by one lock; they are cheap
enough to run on the event loop. Domain failures raise `ApiError` (404/409) directly: every caller is an
HTTP handler.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tilde.server._db import Location
from tilde.server._ids import new_id, utc_now
from tilde.server.errors import ApiError
from tilde.server.iam.builtin import BUILTIN_POLICIES
from tilde.server.iam.store import IAM_SCHEMA, IamStore
from tilde.server.registry_principals import (
    AgentRecord,
    KeyRecord,
    PrincipalStore,
    RoleRecord,
    UploadRecord,
)

__all__ = [
    "ADMIN_USERNAME",
    "AgentRecord",
    "KeyRecord",
    "MemberRecord",
    "OrgRecord",
    "Registry",
    "RepoRecord",
    "RoleRecord",
    "UploadRecord",
    "UserRecord",
]

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, full_name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS organizations (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, display_name TEXT NOT NULL, created_at TEXT NOT NULL,
    deleted_at TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS org_name ON organizations(name) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS memberships (
    org_id TEXT NOT NULL, user_id TEXT NOT NULL, joined_at TEXT NOT NULL, role TEXT NOT NULL DEFAULT 'member',
    PRIMARY KEY (org_id, user_id));
CREATE TABLE IF NOT EXISTS repositories (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    visibility TEXT NOT NULL DEFAULT 'private', retention_days INTEGER, session_max_duration_days INTEGER,
    agent_commits_require_approval INTEGER NOT NULL DEFAULT 0, created_by_type TEXT NOT NULL,
    created_by TEXT NOT NULL, created_at TEXT NOT NULL, deleted_at TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS repo_name ON repositories(org_id, name) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}', inline_policy TEXT NOT NULL DEFAULT '', inline_policy_updated_at
    TEXT,
    created_by_type TEXT NOT NULL, created_by TEXT NOT NULL, created_by_name TEXT NOT NULL,
    created_at TEXT NOT NULL, last_used_at TEXT, UNIQUE (org_id, name));
CREATE TABLE IF NOT EXISTS roles (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    created_by_type TEXT NOT NULL, created_by TEXT NOT NULL, created_by_name TEXT NOT NULL,
    created_at TEXT NOT NULL, last_used_at TEXT, UNIQUE (org_id, name));
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, principal_type TEXT NOT NULL, principal_id TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', token_hash TEXT NOT NULL UNIQUE, token_hint TEXT NOT NULL,
    created_at TEXT NOT NULL, last_used_at TEXT, revoked_at TEXT);
CREATE INDEX IF NOT EXISTS api_keys_principal ON api_keys(principal_type, principal_id, id);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY, repo_id TEXT NOT NULL, session_id TEXT NOT NULL, path TEXT NOT NULL,
    blob_key TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, created_at TEXT NOT NULL,
    declared_size INTEGER, state TEXT NOT NULL DEFAULT 'received');
CREATE TABLE IF NOT EXISTS commit_keys (
    repo_id TEXT NOT NULL, session_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (repo_id, session_id));
"""
    + IAM_SCHEMA
)

ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class UserRecord:
    """A human user."""

    id: str
    username: str
    full_name: str
    email: str
    created_at: str


@dataclass(frozen=True)
class OrgRecord:
    """An organization."""

    id: str
    name: str
    display_name: str
    created_at: str


@dataclass(frozen=True)
class MemberRecord:
    """A user's membership of an organization.

    Its fields are the contract entity's, one for one (`tilde.server.api.serialize` sends them all as is).
    """

    organization_id: str
    user_id: str
    username: str
    full_name: str
    email: str
    joined_at: str


@dataclass(frozen=True)
class RepoRecord:
    """A repository; ``id`` is the storage engine's repo id.

    Its fields are the contract entity's, one for one (`tilde.server.api.serialize` sends them all as is).
    """

    id: str
    organization_id: str
    name: str
    description: str
    visibility: str
    retention_days: int | None
    session_max_duration_days: int | None
    agent_commits_require_approval: bool
    created_by_type: str
    created_by: str
    created_at: str


class Registry(IamStore, PrincipalStore):
    """Organizations, repositories, users and principals, in ``data_dir/registry.sqlite3``.

    Changes to memberships, agents and roles bump the IAM generation (see `IamStore`), so cached rights
    never outlive them.

    Args:
        path: The SQLite file.
        builtin_policies: ``(name, description, policy_text)`` of the policies every organization has
            (default: `tilde.server.iam.builtin.BUILTIN_POLICIES`); they are seeded into existing
            organizations now and into new ones at creation.

    """

    def __init__(
        self, path: Location, builtin_policies: Sequence[tuple[str, str, str]] | None = None
    ) -> None:
        super().__init__(path, _SCHEMA)
        self.admin = self.ensure_user(ADMIN_USERNAME, full_name="Administrator")
        if builtin_policies is None:
            builtin_policies = [(p.name, p.description, p.policy_text) for p in BUILTIN_POLICIES.values()]
        self.builtin_policies = tuple(builtin_policies)
        for org in self.list_orgs():
            self.seed_builtin_policies(org.id, self.builtin_policies)

    # -- users and memberships ---------------------------------------------------------------------

    def ensure_user(self, username: str, *, full_name: str = "", email: str = "") -> UserRecord:
        """Return the user called ``username``, creating it when missing.

        Args:
            username: The unique user name.
            full_name: Used only when creating.
            email: Used only when creating.

        """
        with self._tx() as db:
            row = db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                # OR IGNORE: another process starting at the same time may have just created it.
                db.execute(
                    "INSERT OR IGNORE INTO users (id, username, full_name, email, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (new_id(), username, full_name, email, utc_now()),
                )
                row = db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        return UserRecord(**dict(row))

    def get_user(self, user_id: str) -> UserRecord | None:
        """Return the user with ``user_id``, or None."""
        row = self._one("SELECT * FROM users WHERE id = ?", user_id)
        return UserRecord(**dict(row)) if row else None

    def is_member(self, org_id: str, user_id: str) -> bool:
        """Whether the user belongs to the organization (the admin belongs to every one)."""
        if user_id == self.admin.id:
            return True
        return (
            self._one("SELECT 1 FROM memberships WHERE org_id = ? AND user_id = ?", org_id, user_id)
            is not None
        )

    def add_member(self, org_id: str, user_id: str) -> None:
        """Add a user to an organization (no-op when already a member)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO memberships (org_id, user_id, joined_at) VALUES (?, ?, ?)",
                (org_id, user_id, utc_now()),
            )
        self.bump_iam_generation()

    def remove_member(self, org_id: str, user_id: str) -> bool:
        """Remove a user from an organization, its groups and attachments; False when it was not a member."""
        with self._tx() as db:
            cur = db.execute("DELETE FROM memberships WHERE org_id = ? AND user_id = ?", (org_id, user_id))
            removed = cur.rowcount > 0
            if removed:
                self.bump_iam_generation(db)
        if removed:
            self.forget_principal("user", user_id, org_id)
        return removed

    def list_members(self, org_id: str) -> list[MemberRecord]:
        """Every member of the organization, by user name."""
        rows = self._all(
            "SELECT m.org_id, u.id AS user_id, u.username, u.full_name, u.email, m.joined_at "
            "FROM memberships m "
            "JOIN users u ON u.id = m.user_id WHERE m.org_id = ? ORDER BY u.username",
            org_id,
        )
        return [
            MemberRecord(r["org_id"], r["user_id"], r["username"], r["full_name"], r["email"], r["joined_at"])
            for r in rows
        ]

    # -- organizations -----------------------------------------------------------------------------

    def create_org(self, name: str, display_name: str, creator_user_id: str | None) -> OrgRecord:
        """Create an organization with the built-in policies; its creator (and the admin) become owners.

        Duplicate name → 409.
        """
        org = OrgRecord(new_id(), name, display_name, utc_now())
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO organizations (id, name, display_name, created_at) VALUES (?, ?, ?, ?)",
                    (org.id, org.name, org.display_name, org.created_at),
                )
                for user_id in {self.admin.id, creator_user_id} - {None}:
                    db.execute(
                        "INSERT OR IGNORE INTO memberships (org_id, user_id, joined_at, role) "
                        "VALUES (?, ?, ?, 'owner')",
                        (org.id, user_id, org.created_at),
                    )
        except sqlite3.IntegrityError:
            raise ApiError(409, "already_exists", f"organization {name!r} already exists") from None
        self.seed_builtin_policies(org.id, self.builtin_policies)
        return org

    def get_org(self, name: str) -> OrgRecord:
        """Return the live organization called ``name`` (404 otherwise)."""
        row = self._one(
            "SELECT id, name, display_name, created_at FROM organizations WHERE name = ? AND "
            "deleted_at IS NULL",
            name,
        )
        if row is None:
            raise ApiError(404, "not_found", f"organization {name!r} not found")
        return OrgRecord(**dict(row))

    def get_org_by_id(self, org_id: str) -> OrgRecord | None:
        """Return the live organization with ``org_id``, or None."""
        row = self._one(
            "SELECT id, name, display_name, created_at FROM organizations WHERE id = ? AND "
            "deleted_at IS NULL",
            org_id,
        )
        return OrgRecord(**dict(row)) if row else None

    def list_orgs(self, *, user_id: str | None = None, org_id: str | None = None) -> list[OrgRecord]:
        """Organizations visible to a user (all for the admin) or the single one of an agent/role."""
        base = (
            "SELECT o.id, o.name, o.display_name, o.created_at FROM organizations o "
            "WHERE o.deleted_at IS NULL"
        )
        if org_id is not None:
            rows = self._all(base + " AND o.id = ?", org_id)
        elif user_id is None or user_id == self.admin.id:
            rows = self._all(base + " ORDER BY o.name")
        else:
            rows = self._all(
                base + " AND o.id IN (SELECT org_id FROM memberships WHERE user_id = ?) ORDER BY o.name",
                user_id,
            )
        return [OrgRecord(**dict(r)) for r in rows]

    def delete_org(self, org_id: str) -> None:
        """Soft-delete an organization and its repositories."""
        now = utc_now()
        with self._tx() as db:
            db.execute("UPDATE organizations SET deleted_at = ? WHERE id = ?", (now, org_id))
            db.execute(
                "UPDATE repositories SET deleted_at = ? WHERE org_id = ? AND deleted_at IS NULL",
                (now, org_id),
            )
        self.bump_iam_generation()

    # -- principals: deleting one drops its memberships and attachments too ---------------------------

    def update_agent(self, agent_id: str, changes: dict[str, Any]) -> AgentRecord:
        """Apply validated changes to an agent (its inline policy may change its rights)."""
        updated = super().update_agent(agent_id, changes)
        self.bump_iam_generation()
        return updated

    def delete_agent(self, agent_id: str) -> None:
        """Delete an agent, revoke its keys and drop its group memberships and attachments."""
        super().delete_agent(agent_id)
        self.forget_principal("agent", agent_id)

    def delete_role(self, role_id: str) -> None:
        """Delete a role, revoke its keys and drop its group memberships and attachments."""
        super().delete_role(role_id)
        self.forget_principal("role", role_id)

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key; remembered verifications of it (`tilde.server.auth.Authenticator`) end at once."""
        super().revoke_key(key_id)
        self.bump_iam_generation()

    # -- repositories ------------------------------------------------------------------------------

    @staticmethod
    def _repo(row: sqlite3.Row) -> RepoRecord:
        return RepoRecord(
            id=row["id"],
            organization_id=row["org_id"],
            name=row["name"],
            description=row["description"],
            visibility=row["visibility"],
            retention_days=row["retention_days"],
            session_max_duration_days=row["session_max_duration_days"],
            agent_commits_require_approval=bool(row["agent_commits_require_approval"]),
            created_by_type=row["created_by_type"],
            created_by=row["created_by"],
            created_at=row["created_at"],
        )

    def create_repo(
        self, org_id: str, name: str, fields: dict[str, Any], created_by: tuple[str, str]
    ) -> RepoRecord:
        """Create a repository (duplicate live name → 409).

        Args:
            org_id: Owning organization.
            name: Repository name.
            fields: Validated optional columns (description, visibility, retention_days,
                session_max_duration_days, agent_commits_require_approval).
            created_by: ``(principal_type, principal_id)``.

        """
        repo_id = new_id()
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO repositories (id, org_id, name, description, visibility, retention_days, "
                    "session_max_duration_days, agent_commits_require_approval, created_by_type, created_by, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        repo_id,
                        org_id,
                        name,
                        fields.get("description", ""),
                        fields.get("visibility", "private"),
                        fields.get("retention_days"),
                        fields.get("session_max_duration_days"),
                        int(bool(fields.get("agent_commits_require_approval", False))),
                        created_by[0],
                        created_by[1],
                        utc_now(),
                    ),
                )
        except sqlite3.IntegrityError:
            raise ApiError(409, "already_exists", f"repository {name!r} already exists") from None
        return self.get_repo_by_id(repo_id)

    def get_repo(self, org_id: str, name: str) -> RepoRecord:
        """Return the live repository ``name`` of the organization (404 otherwise)."""
        row = self._one(
            "SELECT * FROM repositories WHERE org_id = ? AND name = ? AND deleted_at IS NULL", org_id, name
        )
        if row is None:
            raise ApiError(404, "not_found", f"repository {name!r} not found")
        return self._repo(row)

    def get_org_and_repo(self, org_name: str, repo_name: str) -> tuple[OrgRecord, RepoRecord | None]:
        """Return the live organization ``org_name`` and its live repository ``repo_name`` in one query.

        The repository is None when the organization has no live repository of that name; an unknown
        organization is a 404, as in `get_org`. One point look-up instead of two for every request on a
        repository (callers still decide what the caller may learn before using the repository).
        """
        row = self._one(
            "SELECT o.id, o.name, o.display_name, o.created_at, r.id AS r_id, "
            "r.description AS r_description, r.visibility AS r_visibility, "
            "r.retention_days AS r_retention_days, "
            "r.session_max_duration_days AS r_session_max_duration_days, "
            "r.agent_commits_require_approval AS r_agent_commits_require_approval, "
            "r.created_by_type AS r_created_by_type, r.created_by AS r_created_by, "
            "r.created_at AS r_created_at "
            "FROM organizations o LEFT JOIN repositories r "
            "ON r.org_id = o.id AND r.name = ? AND r.deleted_at IS NULL "
            "WHERE o.name = ? AND o.deleted_at IS NULL",
            repo_name,
            org_name,
        )
        if row is None:
            raise ApiError(404, "not_found", f"organization {org_name!r} not found")
        org = OrgRecord(row["id"], row["name"], row["display_name"], row["created_at"])
        if row["r_id"] is None:
            return org, None
        return org, RepoRecord(
            id=row["r_id"],
            organization_id=org.id,
            name=repo_name,
            description=row["r_description"],
            visibility=row["r_visibility"],
            retention_days=row["r_retention_days"],
            session_max_duration_days=row["r_session_max_duration_days"],
            agent_commits_require_approval=bool(row["r_agent_commits_require_approval"]),
            created_by_type=row["r_created_by_type"],
            created_by=row["r_created_by"],
            created_at=row["r_created_at"],
        )

    def get_repo_by_id(self, repo_id: str) -> RepoRecord:
        """Return the live repository with ``repo_id`` (404 otherwise)."""
        row = self._one("SELECT * FROM repositories WHERE id = ? AND deleted_at IS NULL", repo_id)
        if row is None:
            raise ApiError(404, "not_found", "repository not found")
        return self._repo(row)

    def list_repos(self, org_id: str, after: str | None, limit: int) -> tuple[list[RepoRecord], bool]:
        """Return a page of live repositories by name, strictly after ``after``."""
        items, more = self._page(
            "SELECT * FROM repositories WHERE org_id = ? AND deleted_at IS NULL AND name > ? "
            "ORDER BY name LIMIT ?",
            org_id,
            after or "",
            limit=limit,
        )
        return [self._repo(r) for r in items], more

    def update_repo(self, repo_id: str, fields: dict[str, Any]) -> RepoRecord:
        """Update the given validated columns of a repository."""
        if fields:
            columns = ", ".join(f"{name} = ?" for name in fields)
            values = [int(v) if isinstance(v, bool) else v for v in fields.values()]
            with self._tx() as db:
                db.execute(f"UPDATE repositories SET {columns} WHERE id = ?", (*values, repo_id))
        return self.get_repo_by_id(repo_id)

    def delete_repo(self, repo_id: str) -> None:
        """Soft-delete a repository (its name becomes free again)."""
        with self._tx() as db:
            db.execute("UPDATE repositories SET deleted_at = ? WHERE id = ?", (utc_now(), repo_id))

    # -- idempotent commits ------------------------------------------------------------------------

    def claim_commit_key(self, repo_id: str, session_id: str, key: str) -> bool:
        """Tie ``key`` to the commit of a session unless another key came first; return whether ``key`` holds.

        A session is committed at most once: the first commit request that carries an ``Idempotency-Key``
        claims the session with it, and a repeat of that request (same key) learns the outcome of the first
        instead of a conflict. A different key, or none, gets the usual answers.
        """
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO commit_keys (repo_id, session_id, idempotency_key, created_at)"
                " VALUES (?, ?, ?, ?)",
                (repo_id, session_id, key, utc_now()),
            )
            row = db.execute(
                "SELECT idempotency_key FROM commit_keys WHERE repo_id = ? AND session_id = ?",
                (repo_id, session_id),
            ).fetchone()
        return row is not None and row[0] == key
