"""`ConnectorStore`: connectors, their repository attachments and import jobs, in the registry's SQLite file.

Connector credentials (``config``) are sealed with the server's `SecretBox` under the context
``connector:<id>:config``, so a sealed value copied to another row does not open there; they are opened only
by the import worker and by `ConnectorStore.reencrypt_all` (master-key rotation). Connectors are soft-deleted:
a deleted connector still answers (410), so imports can tell "gone" from "never existed".

At most one import per repository is pending or running: a partial unique index makes the second insert fail,
which the route turns into a 409 without a race.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from tilde.server._db import Connection, Location, Migration, SqliteStore, add_column
from tilde.server._ids import new_id, utc_now
from tilde.server.crypto import SecretBox
from tilde.server.errors import ApiError

__all__ = ["ACTIVE_STATUSES", "ConnectorRecord", "ConnectorStore", "ImportJobRecord"]

#: Job states that hold the repository's import slot.
ACTIVE_STATUSES = ("pending", "running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS connectors (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    source_uri TEXT NOT NULL, display_source TEXT NOT NULL, config BLOB NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, created_by_type TEXT NOT NULL, created_by TEXT NOT NULL,
    created_at TEXT NOT NULL, deleted_at TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS connector_name ON connectors(org_id, name) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS connector_attachments (
    repo_id TEXT NOT NULL, connector_id TEXT NOT NULL, attached_at TEXT NOT NULL,
    PRIMARY KEY (repo_id, connector_id));
CREATE TABLE IF NOT EXISTS import_jobs (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, repo_id TEXT NOT NULL, connector_id TEXT,
    source_repository_id TEXT, source_organization TEXT NOT NULL DEFAULT '',
    source_repository TEXT NOT NULL DEFAULT '', destination_path TEXT NOT NULL, source_prefix TEXT NOT NULL,
    commit_message TEXT NOT NULL, status TEXT NOT NULL, objects_imported INTEGER NOT NULL DEFAULT 0,
    commit_id TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', session_id TEXT,
    created_by_type TEXT NOT NULL, created_by TEXT NOT NULL, created_by_name TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS import_active ON import_jobs(repo_id)
    WHERE status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS import_status ON import_jobs(status);
"""


def _job_node(db: Connection, dialect: str) -> None:
    """Record which node runs each import (replicas of a cluster recover only their own and dead nodes')."""
    add_column(db, "import_jobs", "node_id", "TEXT")


_MIGRATIONS = (
    Migration(1, "connectors, attachments and import jobs", _SCHEMA),
    Migration(2, "the node running each import job", _job_node),
)


@dataclass(frozen=True)
class ConnectorRecord:
    """A connector as stored (``config`` stays sealed)."""

    id: str
    org_id: str
    name: str
    type: str
    source_uri: str
    display_source: str
    sealed_config: bytes
    disabled: bool
    created_by_type: str
    created_by: str
    created_at: str
    deleted_at: str | None

    def info(self) -> dict[str, Any]:
        """Return the contract's ConnectorInfo (never the config)."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "source_uri": self.source_uri,
            "display_source": self.display_source,
            "disabled": self.disabled,
            "public_key": None,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class ImportJobRecord:
    """An import job as stored; `json` gives the contract's ImportJob."""

    id: str
    org_id: str
    repo_id: str
    connector_id: str | None
    source_repository_id: str | None
    source_organization: str
    source_repository: str
    destination_path: str
    source_prefix: str
    commit_message: str
    status: str
    objects_imported: int
    commit_id: str
    error: str
    session_id: str | None
    created_by_type: str
    created_by: str
    created_by_name: str
    created_at: str
    updated_at: str
    node_id: str | None = None

    def json(self) -> dict[str, Any]:
        """Return the contract's ImportJob."""
        return {
            "id": self.id,
            "repository_id": self.repo_id,
            "connector_id": self.connector_id,
            "source_repository_id": self.source_repository_id,
            "source_organization": self.source_organization,
            "source_repository": self.source_repository,
            "destination_path": self.destination_path,
            "source_prefix": self.source_prefix,
            "commit_message": self.commit_message,
            "status": self.status,
            "objects_imported": self.objects_imported,
            "commit_id": self.commit_id,
            "error": self.error,
            "created_by_type": self.created_by_type,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _context(connector_id: str) -> str:
    return f"connector:{connector_id}:config"


def _connector(row: sqlite3.Row) -> ConnectorRecord:
    return ConnectorRecord(
        id=row["id"],
        org_id=row["org_id"],
        name=row["name"],
        type=row["type"],
        source_uri=row["source_uri"],
        display_source=row["display_source"],
        sealed_config=bytes(row["config"]),
        disabled=bool(row["disabled"]),
        created_by_type=row["created_by_type"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        deleted_at=row["deleted_at"],
    )


def _job(row: sqlite3.Row) -> ImportJobRecord:
    return ImportJobRecord(**dict(row))


class ConnectorStore(SqliteStore):
    """Connectors, attachments and import jobs (``app.state.connector_store``); safe to call from any thread.

    Args:
        path: The registry's database file (the tables live beside the registry's).
        box: Seals and opens connector credentials.

    """

    def __init__(self, path: Location, box: SecretBox) -> None:
        super().__init__(path, migrations=_MIGRATIONS, component="connectors")
        self.box = box

    # Connectors

    def create_connector(
        self,
        org_id: str,
        *,
        name: str,
        type: str,
        source_uri: str,
        display_source: str,
        config: dict[str, str],
        created_by_type: str,
        created_by: str,
    ) -> ConnectorRecord:
        """Store a new connector with its config sealed (409 when the organization has one of that name)."""
        connector_id = new_id()
        sealed = self.box.seal(json.dumps(config).encode(), context=_context(connector_id))
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO connectors (id, org_id, name, type, source_uri, display_source, config,"
                    " created_by_type, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        connector_id,
                        org_id,
                        name,
                        type,
                        source_uri,
                        display_source,
                        sealed,
                        created_by_type,
                        created_by,
                        utc_now(),
                    ),
                )
        except sqlite3.IntegrityError:
            raise ApiError(409, "conflict", f"a connector named {name!r} already exists") from None
        return self.get_connector(org_id, connector_id)

    def get_connector(self, org_id: str, connector_id: str, *, live: bool = True) -> ConnectorRecord:
        """Return a connector of the organization (404 unknown; 410 deleted when ``live``)."""
        row = self._one("SELECT * FROM connectors WHERE id = ? AND org_id = ?", connector_id, org_id)
        if row is None:
            raise ApiError(404, "not_found", f"connector {connector_id!r} not found")
        record = _connector(row)
        if live and record.deleted_at is not None:
            raise ApiError(410, "gone", f"connector {connector_id!r} was deleted")
        return record

    def list_connectors(self, org_id: str) -> list[ConnectorRecord]:
        """Return the organization's live connectors, oldest first."""
        rows = self._all(
            "SELECT * FROM connectors WHERE org_id = ? AND deleted_at IS NULL ORDER BY id", org_id
        )
        return [_connector(row) for row in rows]

    def delete_connector(self, org_id: str, connector_id: str) -> None:
        """Soft-delete a connector and detach it everywhere (404 unknown, 410 already deleted)."""
        self.get_connector(org_id, connector_id)
        with self._tx() as db:
            db.execute("UPDATE connectors SET deleted_at = ? WHERE id = ?", (utc_now(), connector_id))
            db.execute("DELETE FROM connector_attachments WHERE connector_id = ?", (connector_id,))

    def set_disabled(self, connector_id: str, disabled: bool) -> None:
        """Disable or re-enable a connector (imports through a disabled one answer 423)."""
        with self._tx() as db:
            db.execute(
                "UPDATE connectors SET disabled = ? WHERE id = ?", (1 if disabled else 0, connector_id)
            )

    def open_config(self, connector: ConnectorRecord) -> dict[str, str]:
        """Return a connector's credentials in clear (for the import worker only; never log or send them)."""
        data = json.loads(self.box.open(connector.sealed_config, context=_context(connector.id)))
        return {str(key): str(value) for key, value in data.items()}

    def reencrypt_all(self, box: SecretBox) -> int:
        """Re-seal every connector's config under ``box``'s current master key (master-key rotation).

        Args:
            box: A box holding the new key first and the old ones after it.

        Returns:
            How many configs were re-sealed (those already under the current key are left alone).

        """
        changed = 0
        with self._tx() as db:
            for row in db.execute("SELECT id, config FROM connectors").fetchall():
                sealed = bytes(row["config"])
                fresh = box.reencrypt(sealed, context=_context(row["id"]))
                if fresh != sealed:
                    db.execute("UPDATE connectors SET config = ? WHERE id = ?", (fresh, row["id"]))
                    changed += 1
        return changed

    # Attachments

    def attach(self, repo_id: str, connector_id: str) -> None:
        """Attach a connector to a repository (idempotent)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO connector_attachments (repo_id, connector_id, attached_at)"
                " VALUES (?, ?, ?)",
                (repo_id, connector_id, utc_now()),
            )

    def detach(self, repo_id: str, connector_id: str) -> bool:
        """Detach a connector from a repository; False when it was not attached."""
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM connector_attachments WHERE repo_id = ? AND connector_id = ?",
                (repo_id, connector_id),
            )
            return cursor.rowcount > 0

    def is_attached(self, repo_id: str, connector_id: str) -> bool:
        """Tell whether the connector is attached to the repository."""
        row = self._one(
            "SELECT 1 FROM connector_attachments WHERE repo_id = ? AND connector_id = ?",
            repo_id,
            connector_id,
        )
        return row is not None

    def attached(self, repo_id: str) -> list[ConnectorRecord]:
        """Return the live connectors attached to a repository, in attachment order."""
        rows = self._all(
            "SELECT c.* FROM connector_attachments a JOIN connectors c ON c.id = a.connector_id"
            " WHERE a.repo_id = ? AND c.deleted_at IS NULL ORDER BY a.attached_at, c.id",
            repo_id,
        )
        return [_connector(row) for row in rows]

    # Import jobs

    def create_job(self, **fields: Any) -> ImportJobRecord:
        """Insert a ``pending`` job (409 when the repository already has a pending or running import).

        Args:
            **fields: The job's columns besides ``id``, ``status``, counters and timestamps.

        """
        job_id = new_id()
        now = utc_now()
        values = {**fields, "id": job_id, "status": "pending", "created_at": now, "updated_at": now}
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        try:
            with self._tx() as db:
                db.execute(f"INSERT INTO import_jobs ({columns}) VALUES ({marks})", tuple(values.values()))
        except sqlite3.IntegrityError:
            raise ApiError(409, "conflict", "another import into this repository is still running") from None
        return self.get_job(fields["repo_id"], job_id)

    def get_job(self, repo_id: str, job_id: str) -> ImportJobRecord:
        """Return a job of the repository (404 otherwise)."""
        row = self._one("SELECT * FROM import_jobs WHERE id = ? AND repo_id = ?", job_id, repo_id)
        if row is None:
            raise ApiError(404, "not_found", f"import job {job_id!r} not found")
        return _job(row)

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Change some of a job's columns (and its ``updated_at``)."""
        fields["updated_at"] = utc_now()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._tx() as db:
            db.execute(f"UPDATE import_jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id))

    def unfinished_jobs(self) -> list[ImportJobRecord]:
        """Return the jobs still pending or running (after a crash: jobs nobody is running any more)."""
        rows = self._all("SELECT * FROM import_jobs WHERE status IN ('pending', 'running') ORDER BY id")
        return [_job(row) for row in rows]
