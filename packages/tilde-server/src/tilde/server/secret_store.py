"""Repository and agent secrets (CONTRACT §4.8), sealed with the server's `SecretBox`.

Secrets live in the registry's SQLite file, in their own ``secrets`` table; only ciphertext is stored. Each
value is sealed with a context naming its scope, owner and key (``"secret:repo:<repo_id>:<KEY>"``), so a
ciphertext copied into another row does not open there.

A secret belongs to a repository (``scope="repo"``, owner = the repository id) or to an agent
(``scope="agent"``, owner = the agent id). Triggers in the database drop an owner's secrets when a repository
is (soft-)deleted or an agent is deleted, and `SecretStore.purge_orphans` clears what older databases left.

`install` puts the store on ``app.state.secret_store`` and the sandbox runtime's
``app.state.sandbox_secret_env(repo, actor)`` callable: repository secrets, overridden by the agent's own
secrets when the sandbox acts as an agent (the request's ``env_vars`` override both, in the runtime).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette

from tilde.server._db import Location, SqliteStore, table_names
from tilde.server._ids import utc_now
from tilde.server.crypto import DecryptionError, SecretBox

__all__ = [
    "KEY_RE",
    "MAX_REQUEST_BYTES",
    "SCOPES",
    "SecretRecord",
    "SecretStore",
    "install",
    "sandbox_env",
]

logger = logging.getLogger("tilde.server.secrets")

#: Secret names (CONTRACT §0); they become environment variable names inside sandboxes.
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,255}\Z")
#: Largest ``PUT`` request body accepted.
MAX_REQUEST_BYTES = 64 * 1024
#: The two owners a secret can have.
SCOPES = ("repo", "agent")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (
    scope TEXT NOT NULL, owner_id TEXT NOT NULL, key TEXT NOT NULL, sealed BLOB NOT NULL,
    created_by_type TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (scope, owner_id, key));
"""

#: Drop an owner's secrets with it. Repositories are soft-deleted (``deleted_at`` set, also when their
#: organization is deleted); agents are deleted outright. Created only where those tables exist.
_TRIGGERS: dict[str, tuple[str, ...]] = {
    "repositories": (
        "CREATE TRIGGER IF NOT EXISTS secrets_drop_with_repository "
        "AFTER UPDATE OF deleted_at ON repositories WHEN NEW.deleted_at IS NOT NULL "
        "BEGIN DELETE FROM secrets WHERE scope = 'repo' AND owner_id = NEW.id; END",
        "CREATE TRIGGER IF NOT EXISTS secrets_drop_with_deleted_repository AFTER DELETE ON repositories "
        "BEGIN DELETE FROM secrets WHERE scope = 'repo' AND owner_id = OLD.id; END",
    ),
    "agents": (
        "CREATE TRIGGER IF NOT EXISTS secrets_drop_with_agent AFTER DELETE ON agents "
        "BEGIN DELETE FROM secrets WHERE scope = 'agent' AND owner_id = OLD.id; END",
    ),
}

#: The same on PostgreSQL: one trigger function, three triggers (``CREATE OR REPLACE`` makes them idempotent).
_PG_TRIGGERS: dict[str, tuple[str, ...]] = {
    "repositories": (
        "CREATE OR REPLACE FUNCTION secrets_drop_with_owner() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "DELETE FROM secrets WHERE scope = TG_ARGV[0] AND owner_id = OLD.id; RETURN NULL; END $$",
        "CREATE OR REPLACE TRIGGER secrets_drop_with_repository AFTER UPDATE OF deleted_at ON repositories "
        "FOR EACH ROW WHEN (NEW.deleted_at IS NOT NULL) EXECUTE FUNCTION secrets_drop_with_owner('repo')",
        "CREATE OR REPLACE TRIGGER secrets_drop_with_deleted_repository AFTER DELETE ON repositories "
        "FOR EACH ROW EXECUTE FUNCTION secrets_drop_with_owner('repo')",
    ),
    "agents": (
        "CREATE OR REPLACE FUNCTION secrets_drop_with_owner() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "DELETE FROM secrets WHERE scope = TG_ARGV[0] AND owner_id = OLD.id; RETURN NULL; END $$",
        "CREATE OR REPLACE TRIGGER secrets_drop_with_agent AFTER DELETE ON agents "
        "FOR EACH ROW EXECUTE FUNCTION secrets_drop_with_owner('agent')",
    ),
}


@dataclass(frozen=True)
class SecretRecord:
    """A secret's metadata (never its value); the fields of the contract's list entry, one for one."""

    key: str
    created_by_type: str
    created_by: str
    created_at: str
    updated_at: str


def _context(scope: str, owner_id: str, key: str) -> str:
    return f"secret:{scope}:{owner_id}:{key}"


class SecretStore(SqliteStore):
    """Sealed secrets in the registry's database file; safe to call from any thread.

    Args:
        path: The registry's SQLite file.
        box: Seals and opens values (the server's master key).

    """

    def __init__(self, path: Location, box: SecretBox) -> None:
        super().__init__(path, _SCHEMA, component="secrets")
        self.box = box
        with self._schema_tx() as db:
            tables = table_names(db)
            statements = _TRIGGERS if self.dialect == "sqlite" else _PG_TRIGGERS
            for table, triggers in statements.items():
                if table in tables:
                    for statement in triggers:
                        db.execute(statement)

    def list_secrets(self, scope: str, owner_id: str) -> list[SecretRecord]:
        """Return the metadata of an owner's secrets, by key.

        Args:
            scope: ``"repo"`` or ``"agent"``.
            owner_id: The repository's or agent's id.

        """
        rows = self._all(
            "SELECT key, created_by_type, created_by, created_at, updated_at FROM secrets "
            "WHERE scope = ? AND owner_id = ? ORDER BY key",
            scope,
            owner_id,
        )
        return [SecretRecord(**dict(row)) for row in rows]

    def get(self, scope: str, owner_id: str, key: str) -> str | None:
        """Return a secret's value in clear, or None when there is no such secret.

        Raises:
            DecryptionError: The stored value cannot be opened with the server's master keys.

        """
        row = self._one(
            "SELECT sealed FROM secrets WHERE scope = ? AND owner_id = ? AND key = ?", scope, owner_id, key
        )
        if row is None:
            return None
        return self.box.open(bytes(row["sealed"]), context=_context(scope, owner_id, key)).decode("utf-8")

    def put(self, scope: str, owner_id: str, key: str, value: str, creator: tuple[str, str]) -> bool:
        """Create a secret or replace its value (``created_*`` kept, ``updated_at`` bumped).

        Args:
            scope: ``"repo"`` or ``"agent"``.
            owner_id: The repository's or agent's id.
            key: The secret's name (validated by the caller).
            value: The value in clear.
            creator: ``(principal_type, principal_id)`` of the writer (recorded on creation only).

        Returns:
            True when the secret was created, False when it was replaced.

        """
        sealed = self.box.seal(value.encode("utf-8"), context=_context(scope, owner_id, key))
        now = utc_now()
        with self._tx() as db:
            replaced = db.execute(
                "UPDATE secrets SET sealed = ?, updated_at = ? WHERE scope = ? AND owner_id = ? AND key = ?",
                (sealed, now, scope, owner_id, key),
            ).rowcount
            if not replaced:
                db.execute(
                    "INSERT INTO secrets (scope, owner_id, key, sealed, created_by_type, created_by, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (scope, owner_id, key, sealed, *creator, now, now),
                )
        return not replaced

    def delete(self, scope: str, owner_id: str, key: str) -> bool:
        """Delete a secret; False when there was none."""
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM secrets WHERE scope = ? AND owner_id = ? AND key = ?", (scope, owner_id, key)
            )
            return cur.rowcount > 0

    def env(self, scope: str, owner_id: str) -> dict[str, str]:
        """Return an owner's secrets as ``{key: value}``; values that no longer open are skipped (logged)."""
        rows = self._all("SELECT key, sealed FROM secrets WHERE scope = ? AND owner_id = ?", scope, owner_id)
        values: dict[str, str] = {}
        for row in rows:
            key = str(row["key"])
            try:
                values[key] = self.box.open(
                    bytes(row["sealed"]), context=_context(scope, owner_id, key)
                ).decode("utf-8")
            except DecryptionError as error:
                # The key's name and the reason only: never anything of the value.
                logger.warning("secret %s of %s %s cannot be opened: %s", key, scope, owner_id, error)
        return values

    def purge_orphans(self) -> int:
        """Delete secrets whose repository or agent no longer exists; return how many went."""
        with self._tx() as db:
            tables = table_names(db)
            removed = 0
            if "repositories" in tables:
                removed += db.execute(
                    "DELETE FROM secrets WHERE scope = 'repo' AND owner_id NOT IN "
                    "(SELECT id FROM repositories WHERE deleted_at IS NULL)"
                ).rowcount
            if "agents" in tables:
                removed += db.execute(
                    "DELETE FROM secrets WHERE scope = 'agent' AND owner_id NOT IN (SELECT id FROM agents)"
                ).rowcount
            return removed

    def reencrypt_all(self, box: SecretBox) -> int:
        """Re-seal every secret under ``box``'s current master key (master-key rotation).

        Args:
            box: A box holding the new key first and the old ones after it.

        Returns:
            How many values were re-sealed (those already under the current key are left alone).

        Raises:
            DecryptionError: A value was sealed with a key ``box`` does not have (nothing is changed).

        """
        changed = 0
        with self._tx() as db:
            rows = db.execute("SELECT scope, owner_id, key, sealed FROM secrets").fetchall()
            for row in rows:
                sealed = bytes(row["sealed"])
                fresh = box.reencrypt(sealed, context=_context(row["scope"], row["owner_id"], row["key"]))
                if fresh != sealed:
                    db.execute(
                        "UPDATE secrets SET sealed = ? WHERE scope = ? AND owner_id = ? AND key = ?",
                        (fresh, row["scope"], row["owner_id"], row["key"]),
                    )
                    changed += 1
        return changed


def sandbox_env(store: SecretStore) -> Callable[[Any, Any], dict[str, str]]:
    """Return the ``(repo, actor) -> env`` callable the sandbox runtime asks for a sandbox's secrets.

    Args:
        store: Where the secrets are.

    """

    def secret_env(repo: Any, actor: Any) -> dict[str, str]:
        env = store.env("repo", repo.id)
        if getattr(actor, "type", None) == "agent":
            env.update(store.env("agent", actor.id))  # the agent's own secrets win over the repository's
        return env

    return secret_env


def install(app: Starlette) -> SecretStore:
    """Open the secret store beside the registry and hook it into the app (closed on shutdown).

    Sets ``app.state.secret_store`` and ``app.state.sandbox_secret_env``; needs ``app.state.config``,
    ``app.state.registry`` (its tables must exist) and ``app.state.secret_box``.

    Args:
        app: The application being built by `tilde.server.app.create_app`.

    Returns:
        The store.

    """
    store = SecretStore(app.state.config.database("registry"), app.state.secret_box)
    purged = store.purge_orphans()
    if purged:
        logger.info("dropped %d secrets of deleted repositories and agents", purged)
    app.state.secret_store = store
    app.state.sandbox_secret_env = sandbox_env(store)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        try:
            async with inner(application) as state:
                yield state
        finally:
            store.close()

    app.router.lifespan_context = lifespan
    return store
