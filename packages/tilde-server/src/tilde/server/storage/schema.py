"""The storage engine's metadata schema and its history, shared by the SQLite and PostgreSQL stores.

Each `Migration` is one released change; `tilde.server._db.apply_migrations` runs the ones a database lacks
at start-up (``schema_version`` records them). The steps are idempotent, so a SQLite file made before the
version table existed simply runs them all. The DDL is SQLite's; `tilde.server._db_postgres` rewrites it.
"""

from __future__ import annotations

from tilde.server._db import Connection, Migration, add_column

__all__ = ["METADATA_COMPONENT", "METADATA_MIGRATIONS", "METADATA_SCHEMA_V1"]

#: The metadata store's name in ``schema_version``.
METADATA_COMPONENT = "metadata"

#: The first schema: repositories, commits, versions, sessions, staged rows, uploads and their parts.
METADATA_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS repos (
    repo_id TEXT PRIMARY KEY,
    head_seq INTEGER NOT NULL,
    head_commit_id TEXT,
    created_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS commits (
    repo_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    parent_id TEXT,
    message TEXT NOT NULL,
    committer_type TEXT NOT NULL,
    committer_id TEXT NOT NULL,
    committer_name TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    tree_id TEXT NOT NULL,
    object_count INTEGER NOT NULL,
    total_size INTEGER NOT NULL,
    PRIMARY KEY (repo_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS commits_by_id ON commits (repo_id, id);

-- One row per object version; visible at seq n when born_seq <= n < died_seq (live rows: died_seq = 2^62).
CREATE TABLE IF NOT EXISTS versions (
    repo_id TEXT NOT NULL,
    path TEXT NOT NULL,
    born_seq INTEGER NOT NULL,
    died_seq INTEGER NOT NULL,
    blob_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    modified_us INTEGER NOT NULL,
    PRIMARY KEY (repo_id, path, born_seq)
) WITHOUT ROWID;
-- Head listings: a range scan over the live rows in path order.
CREATE INDEX IF NOT EXISTS versions_live ON versions (repo_id, died_seq, path);
-- Diffs: the paths a range of commits touched.
CREATE INDEX IF NOT EXISTS versions_born ON versions (repo_id, born_seq, path);

CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    repo_id TEXT NOT NULL,
    base_seq INTEGER NOT NULL,
    base_commit_id TEXT,
    state TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    commit_id TEXT,
    pending_message TEXT,
    pending_metadata TEXT NOT NULL,
    pending_actor TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_by_repo ON sessions (repo_id);

-- A session's writes (deleted = 0) and deletions (deleted = 1) on top of its base commit.
CREATE TABLE IF NOT EXISTS staged (
    session_id TEXT NOT NULL,
    path TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    blob_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    modified_us INTEGER NOT NULL,
    PRIMARY KEY (session_id, path)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    repo_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    path TEXT NOT NULL,
    created_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uploads_by_session ON uploads (session_id);
CREATE INDEX IF NOT EXISTS uploads_by_repo ON uploads (repo_id);

CREATE TABLE IF NOT EXISTS upload_parts (
    upload_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    blob_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (upload_id, number)
) WITHOUT ROWID;
"""


def _part_size(conn: Connection, dialect: str) -> None:
    # Uploads started before in-place multipart existed have no part size: they stay one blob per part.
    add_column(conn, "uploads", "part_size", "INTEGER")


def _source_metadata(conn: Connection, dialect: str) -> None:
    # Versions written before imports existed have no origin to report.
    add_column(conn, "versions", "source_metadata", "TEXT NOT NULL DEFAULT '{}'")
    add_column(conn, "staged", "source_metadata", "TEXT NOT NULL DEFAULT '{}'")


#: Every step, in order.
METADATA_MIGRATIONS = (
    Migration(1, "repositories, commits, versions, sessions, staged rows and uploads", METADATA_SCHEMA_V1),
    Migration(2, "part size of in-place multipart uploads", _part_size),
    Migration(3, "source metadata of imported versions", _source_metadata),
)
