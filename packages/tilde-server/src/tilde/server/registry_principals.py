"""Agents, roles, API keys and pending single-part uploads: the principal half of the registry.

API keys are stored as salted hashes: each row keeps a random salt and SHA-256(salt + token), never the
token. Keys minted here (`mint_token`) read ``<prefix><lookup id>.<secret>``: the 16 hex digits of the lookup
id are not secret and find the row in one indexed query, whatever the number of keys; the secret part holds
256 random bits. Tokens of another shape (an admin key given on the command line) are indexed by a truncated
digest instead. Rows written before salting (``salt`` NULL, ``token_hash`` = SHA-256(token)) still
authenticate and are re-hashed with a salt on first use.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from tilde.server._db import Connection, Location, Migration, SqliteStore, add_column
from tilde.server._ids import new_id, utc_now
from tilde.server.errors import ApiError

#: ``<prefix><16 hex digits: the lookup id>.<secret>``, the shape of keys made by `mint_token`.
_MINTED = re.compile(r"^[a-z]{3}-([0-9a-f]{16})\.[A-Za-z0-9_-]{32,}$")
_SALT_BYTES = 16


def mint_token(prefix: str) -> str:
    """Return a new API key ``<prefix><lookup id>.<secret>`` (the secret part has 256 random bits).

    Args:
        prefix: ``tuk-``, ``tak-`` or ``trk-``.

    """
    return f"{prefix}{secrets.token_hex(8)}.{secrets.token_urlsafe(32)}"


def token_lookup_id(token: str) -> str:
    """Return the index under which a key's row is found: its embedded lookup id, else a short digest."""
    minted = _MINTED.match(token)
    if minted:
        return minted.group(1)
    return "d" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def hash_token(token: str, salt: bytes | None = None) -> str:
    """Return the stored hash of an API key: SHA-256(salt + token), or the legacy unsalted SHA-256.

    A fast hash is the right one here: keys carry 256 random bits, so nobody can guess them however cheap
    each try is, and a slow password hash would only make every request slower. The salt makes equal
    tokens hash differently and rules out precomputed tables.

    Args:
        token: The clear token.
        salt: The row's salt; None computes the unsalted hash of rows written before salting.

    """
    return hashlib.sha256((salt or b"") + token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AgentRecord:
    """An agent principal (belongs to one organization).

    Its fields are the contract entity's, one for one (`tilde.server.api.serialize` sends them all as is).
    """

    id: str
    organization_id: str
    name: str
    description: str
    metadata: dict[str, Any]
    inline_policy: str
    inline_policy_updated_at: str | None
    created_by_type: str
    created_by: str
    created_by_name: str
    created_at: str
    last_used_at: str | None


@dataclass(frozen=True)
class RoleRecord:
    """A role principal (belongs to one organization).

    Its fields are the contract entity's, one for one (`tilde.server.api.serialize` sends them all as is).
    """

    id: str
    organization_id: str
    name: str
    description: str
    created_by_type: str
    created_by: str
    created_by_name: str
    created_at: str
    last_used_at: str | None


@dataclass(frozen=True)
class KeyRecord:
    """An API key (never the token itself, only its hint)."""

    id: str
    principal_type: str
    principal_id: str
    name: str
    description: str
    token_hint: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


#: States of an upload target: issued (no bytes yet), received (bytes waiting for finalize), consumed.
UPLOAD_ISSUED, UPLOAD_RECEIVED, UPLOAD_CONSUMED = "issued", "received", "consumed"


@dataclass(frozen=True)
class UploadRecord:
    """An upload target: a single upload from its stage call on, or the tombstone of a finished upload.

    Attributes:
        upload_id: The upload.
        repo_id: Repository.
        session_id: Session.
        path: Object path.
        blob_key: The received bytes ('' until a PUT arrived).
        size: Bytes received.
        sha256: Their SHA-256 ('' until a PUT arrived).
        declared_size: The size the stage call declared, None when it declared none.
        state: ``issued``, ``received`` or ``consumed`` (finalized or completed: never usable again).

    """

    upload_id: str
    repo_id: str
    session_id: str
    path: str
    blob_key: str = ""
    size: int = 0
    sha256: str = ""
    declared_size: int | None = None
    state: str = UPLOAD_ISSUED


_AGENT_COLUMNS = (
    "id, org_id AS organization_id, name, description, metadata, inline_policy, inline_policy_updated_at, "
    "created_by_type, created_by, created_by_name, created_at, last_used_at"
)
_ROLE_COLUMNS = (
    "id, org_id AS organization_id, name, description, created_by_type, created_by, "
    "created_by_name, created_at, "
    "last_used_at"
)
_KEY_COLUMNS = (
    "id, principal_type, principal_id, name, description, token_hint, created_at, last_used_at, revoked_at"
)


def _key(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(**{name: row[name] for name in KeyRecord.__dataclass_fields__})


def _agent(row: sqlite3.Row) -> AgentRecord:
    values = dict(row)
    values["metadata"] = json.loads(values["metadata"] or "{}")
    return AgentRecord(**values)


def _salts_states_owners(db: Connection, dialect: str) -> None:
    """Bring registries made by earlier releases up to date (new databases already have all of it)."""
    add_column(db, "api_keys", "salt", "TEXT")
    add_column(db, "api_keys", "lookup_id", "TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS api_keys_lookup ON api_keys(lookup_id)")
    add_column(db, "uploads", "declared_size", "INTEGER")
    add_column(db, "uploads", "state", f"TEXT NOT NULL DEFAULT '{UPLOAD_RECEIVED}'")
    if add_column(db, "memberships", "role", "TEXT NOT NULL DEFAULT 'member'"):
        # Organizations made before owners existed: their creator joined at the very moment the
        # organization was made, which is how we recognise them.
        db.execute(
            "UPDATE memberships SET role = 'owner' WHERE joined_at = "
            "(SELECT created_at FROM organizations o WHERE o.id = memberships.org_id)"
        )


def registry_migrations(schema: str) -> tuple[Migration, ...]:
    """Return the registry's schema history: ``schema`` (its tables, IAM's included), then later changes."""
    return (
        Migration(1, "users, organizations, repositories, principals, keys, uploads and IAM", schema),
        Migration(
            2, "API key salts and lookup ids, single-upload states, organization owners", _salts_states_owners
        ),
    )


class PrincipalStore(SqliteStore):
    """Agents, roles and API keys (base of `tilde.server.registry.Registry`).

    Args:
        path: The database file.
        schema: The registry's schema (it creates ``api_keys``); the salt and lookup columns are added to
            databases made before they existed.

    """

    def __init__(self, path: Location, schema: str) -> None:
        super().__init__(path, migrations=registry_migrations(schema), component="registry")

    # -- agents ------------------------------------------------------------------------------------

    def create_agent(
        self,
        org_id: str,
        name: str,
        description: str,
        metadata: dict[str, Any],
        creator: tuple[str, str, str],
    ) -> AgentRecord:
        """Create an agent (duplicate name in the org → 409).

        Args:
            org_id: Owning organization.
            name: Agent name.
            description: Free text.
            metadata: Free-form JSON object.
            creator: ``(principal_type, principal_id, principal_name)``.

        """
        agent_id = new_id()
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO agents (id, org_id, name, description, metadata, "
                    "created_by_type, created_by, "
                    "created_by_name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (agent_id, org_id, name, description, json.dumps(metadata), *creator, utc_now()),
                )
        except sqlite3.IntegrityError:
            raise ApiError(409, "already_exists", f"agent {name!r} already exists") from None
        found = self.get_agent_by_id(agent_id)
        assert found is not None
        return found

    def get_agent(self, org_id: str, name: str) -> AgentRecord:
        """Return the agent ``name`` of the organization (404 otherwise)."""
        row = self._one(f"SELECT {_AGENT_COLUMNS} FROM agents WHERE org_id = ? AND name = ?", org_id, name)
        if row is None:
            raise ApiError(404, "not_found", f"agent {name!r} not found")
        return _agent(row)

    def get_agent_by_id(self, agent_id: str) -> AgentRecord | None:
        """Return the agent with ``agent_id``, or None."""
        row = self._one(f"SELECT {_AGENT_COLUMNS} FROM agents WHERE id = ?", agent_id)
        return _agent(row) if row else None

    def list_agents(self, org_id: str, after: str | None, limit: int) -> tuple[list[AgentRecord], bool]:
        """Return a page of the organization's agents by name, strictly after ``after``."""
        items, more = self._page(
            f"SELECT {_AGENT_COLUMNS} FROM agents WHERE org_id = ? AND name > ? ORDER BY name LIMIT ?",
            org_id,
            after or "",
            limit=limit,
        )
        return [_agent(r) for r in items], more

    def update_agent(self, agent_id: str, changes: dict[str, Any]) -> AgentRecord:
        """Apply validated changes (``description``, ``metadata``, ``inline_policy``) to an agent."""
        sets: dict[str, Any] = {}
        if "description" in changes:
            sets["description"] = changes["description"]
        if "metadata" in changes:
            sets["metadata"] = json.dumps(changes["metadata"])
        if "inline_policy" in changes:
            sets["inline_policy"] = changes["inline_policy"]
            sets["inline_policy_updated_at"] = utc_now()
        if sets:
            with self._tx() as db:
                columns = ", ".join(f"{name} = ?" for name in sets)
                db.execute(f"UPDATE agents SET {columns} WHERE id = ?", (*sets.values(), agent_id))
        found = self.get_agent_by_id(agent_id)
        if found is None:
            raise ApiError(404, "not_found", "agent not found")
        return found

    def delete_agent(self, agent_id: str) -> None:
        """Delete an agent and revoke its keys."""
        self._delete_principal("agents", "agent", agent_id)

    # -- roles -------------------------------------------------------------------------------------

    def create_role(
        self, org_id: str, name: str, description: str, creator: tuple[str, str, str]
    ) -> RoleRecord:
        """Create a role (duplicate name in the org → 409); ``creator`` as for `create_agent`."""
        role_id = new_id()
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO roles (id, org_id, name, description, created_by_type, created_by, "
                    "created_by_name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (role_id, org_id, name, description, *creator, utc_now()),
                )
        except sqlite3.IntegrityError:
            raise ApiError(409, "already_exists", f"role {name!r} already exists") from None
        found = self.get_role_by_id(role_id)
        assert found is not None
        return found

    def get_role(self, org_id: str, name: str) -> RoleRecord:
        """Return the role ``name`` of the organization (404 otherwise)."""
        row = self._one(f"SELECT {_ROLE_COLUMNS} FROM roles WHERE org_id = ? AND name = ?", org_id, name)
        if row is None:
            raise ApiError(404, "not_found", f"role {name!r} not found")
        return RoleRecord(**dict(row))

    def get_role_by_id(self, role_id: str) -> RoleRecord | None:
        """Return the role with ``role_id``, or None."""
        row = self._one(f"SELECT {_ROLE_COLUMNS} FROM roles WHERE id = ?", role_id)
        return RoleRecord(**dict(row)) if row else None

    def list_roles(self, org_id: str, after: str | None, limit: int) -> tuple[list[RoleRecord], bool]:
        """Return a page of the organization's roles by name, strictly after ``after``."""
        items, more = self._page(
            f"SELECT {_ROLE_COLUMNS} FROM roles WHERE org_id = ? AND name > ? ORDER BY name LIMIT ?",
            org_id,
            after or "",
            limit=limit,
        )
        return [RoleRecord(**dict(r)) for r in items], more

    def delete_role(self, role_id: str) -> None:
        """Delete a role and revoke its keys."""
        self._delete_principal("roles", "role", role_id)

    def _delete_principal(self, table: str, principal_type: str, principal_id: str) -> None:
        with self._tx() as db:
            db.execute(f"DELETE FROM {table} WHERE id = ?", (principal_id,))
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE principal_type = ? AND principal_id = ? "
                "AND revoked_at IS NULL",
                (utc_now(), principal_type, principal_id),
            )

    # -- API keys ----------------------------------------------------------------------------------

    def create_key(
        self, principal_type: str, principal_id: str, token: str, *, name: str = "", description: str = ""
    ) -> KeyRecord:
        """Store a new API key for a principal (only its hash and last four characters are kept).

        Args:
            principal_type: ``"user"``, ``"agent"`` or ``"role"``.
            principal_id: The principal's id.
            token: The clear token, returned to the caller once by the HTTP layer.
            name: Key name.
            description: Free text.

        """
        key_id = new_id()
        salt = os.urandom(_SALT_BYTES)
        with self._tx() as db:
            db.execute(
                "INSERT INTO api_keys (id, principal_type, principal_id, name, description, "
                "token_hash, salt, lookup_id, token_hint, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    principal_type,
                    principal_id,
                    name,
                    description,
                    hash_token(token, salt),
                    salt.hex(),
                    token_lookup_id(token),
                    token[-4:],
                    utc_now(),
                ),
            )
        found = self.get_key(principal_type, principal_id, key_id)
        assert found is not None
        return found

    def _find_token(self, token: str, *, live: bool) -> sqlite3.Row | None:
        """Return the row of ``token`` (salted, or legacy unsalted re-hashed on the way), or None."""
        live_only = " AND revoked_at IS NULL" if live else ""
        candidates = self._all(
            f"SELECT {_KEY_COLUMNS}, salt, token_hash FROM api_keys WHERE lookup_id = ?{live_only}",
            token_lookup_id(token),
        )
        for row in candidates:
            if row["salt"] and hmac.compare_digest(
                str(row["token_hash"]), hash_token(token, bytes.fromhex(row["salt"]))
            ):
                return row
        # A row from before salting. Looking it up by equality is safe: it is a hash of 256 random bits.
        legacy = self._one(
            f"SELECT {_KEY_COLUMNS}, salt, token_hash FROM api_keys WHERE token_hash = ? AND salt IS NULL"
            f"{live_only}",
            hash_token(token),
        )
        if legacy is not None:
            salt = os.urandom(_SALT_BYTES)
            with self._tx() as db:
                db.execute(
                    "UPDATE api_keys SET token_hash = ?, salt = ?, lookup_id = ? "
                    "WHERE id = ? AND salt IS NULL",
                    (hash_token(token, salt), salt.hex(), token_lookup_id(token), legacy["id"]),
                )
        return legacy

    def has_token(self, token: str) -> bool:
        """Whether this exact token is already stored (revoked or not)."""
        return self._find_token(token, live=False) is not None

    def lookup_token(self, token: str) -> KeyRecord | None:
        """Return the live (not revoked) key matching ``token``, or None."""
        row = self._find_token(token, live=True)
        return _key(row) if row else None

    def touch_key(self, key: KeyRecord) -> None:
        """Record that a key (and its agent/role) was just used."""
        now = utc_now()
        with self._tx() as db:
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key.id))
            if key.principal_type in ("agent", "role"):
                table = "agents" if key.principal_type == "agent" else "roles"
                db.execute(f"UPDATE {table} SET last_used_at = ? WHERE id = ?", (now, key.principal_id))

    def get_key(self, principal_type: str, principal_id: str, key_id: str) -> KeyRecord | None:
        """One key of a principal (revoked ones included), or None."""
        row = self._one(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE principal_type = ? AND principal_id = ? AND id = ?",
            principal_type,
            principal_id,
            key_id,
        )
        return KeyRecord(**dict(row)) if row else None

    def list_keys(
        self, principal_type: str, principal_id: str, after: str | None, limit: int
    ) -> tuple[list[KeyRecord], bool]:
        """Return a page of a principal's keys in creation order (ids sort by time), after ``after``."""
        items, more = self._page(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE principal_type = ? AND principal_id = ? AND id > ? "
            "ORDER BY id LIMIT ?",
            principal_type,
            principal_id,
            after or "",
            limit=limit,
        )
        return [KeyRecord(**dict(r)) for r in items], more

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key (idempotent)."""
        with self._tx() as db:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (utc_now(), key_id)
            )

    # -- upload targets ------------------------------------------------------------------------------

    def issue_upload(self, record: UploadRecord) -> None:
        """Remember a single upload when its URL is handed out (state ``issued``, with its declared size)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO uploads (upload_id, repo_id, session_id, path, blob_key, size, sha256, "
                "created_at, declared_size, state) VALUES (?, ?, ?, ?, '', 0, '', ?, ?, ?)",
                (
                    record.upload_id,
                    record.repo_id,
                    record.session_id,
                    record.path,
                    utc_now(),
                    record.declared_size,
                    UPLOAD_ISSUED,
                ),
            )

    def receive_upload(self, upload_id: str, blob_key: str, size: int, sha256: str) -> bool:
        """Record the bytes a PUT delivered (a repeated PUT replaces them) unless the upload was consumed.

        Returns:
            False when the upload is unknown or already consumed (nothing changed).

        """
        with self._tx() as db:
            changed = db.execute(
                "UPDATE uploads SET blob_key = ?, size = ?, sha256 = ?, state = ? "
                "WHERE upload_id = ? AND state != ?",
                (blob_key, size, sha256, UPLOAD_RECEIVED, upload_id, UPLOAD_CONSUMED),
            ).rowcount
        return bool(changed)

    def consume_upload(self, upload_id: str) -> bool:
        """Mark received bytes as finalized, atomically: of two concurrent finalize calls only one wins.

        Returns:
            True for the caller that consumed the upload.

        """
        with self._tx() as db:
            changed = db.execute(
                "UPDATE uploads SET state = ? WHERE upload_id = ? AND state = ?",
                (UPLOAD_CONSUMED, upload_id, UPLOAD_RECEIVED),
            ).rowcount
        return bool(changed)

    def release_upload(self, upload_id: str) -> None:
        """Undo `consume_upload` when staging the bytes failed, so finalize can be retried."""
        with self._tx() as db:
            db.execute(
                "UPDATE uploads SET state = ? WHERE upload_id = ? AND state = ?",
                (UPLOAD_RECEIVED, upload_id, UPLOAD_CONSUMED),
            )

    def bury_upload(self, record: UploadRecord) -> None:
        """Keep a consumed tombstone for a finished multipart upload, so its URLs and token answer 409."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (upload_id, repo_id, session_id, path, blob_key, size, "
                "sha256, "
                "created_at, declared_size, state) VALUES (?, ?, ?, ?, '', 0, '', ?, NULL, ?)",
                (
                    record.upload_id,
                    record.repo_id,
                    record.session_id,
                    record.path,
                    utc_now(),
                    UPLOAD_CONSUMED,
                ),
            )

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        """Return the upload target with this id, or None."""
        row = self._one(
            "SELECT upload_id, repo_id, session_id, path, blob_key, size, sha256, declared_size, state "
            "FROM uploads WHERE upload_id = ?",
            upload_id,
        )
        return UploadRecord(**dict(row)) if row else None

    def pending_upload_blob_keys(self) -> set[str]:
        """Return the blob keys of received uploads still waiting for their finalize call.

        A consumed upload's bytes are the staged object's (referenced by the engine) or, rolled back, garbage.
        """
        rows = self._all("SELECT blob_key FROM uploads WHERE state = ? AND blob_key != ''", UPLOAD_RECEIVED)
        return {str(row[0]) for row in rows}

    def forget_uploads_before(self, cutoff: str) -> int:
        """Forget upload targets (and tombstones) created before ``cutoff`` (RFC 3339); return how many.

        Call it with the URLs' and tokens' lifetime: an upload forgotten then can no longer be used anyway.
        """
        with self._tx() as db:
            return db.execute("DELETE FROM uploads WHERE created_at < ?", (cutoff,)).rowcount
