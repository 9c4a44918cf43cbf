"""SQLite (WAL) implementation of ``MetadataStore``.

Connections come from a small pool: a connection serves one transaction at a time, so any thread can use the
store, and threads that come and go (sandbox workers, the HTTP thread pool) do not leak connections. Writers
are serialised by an in-process lock before ``BEGIN IMMEDIATE`` so they queue without SQLite's sleep-and-retry
busy handler; the busy timeout still covers other processes sharing the database file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tilde.server._private import private_database
from tilde.server.storage.sqlite_history import HistoryQueries
from tilde.server.storage.sqlite_sessions import SessionQueries

__all__ = ["SQLiteMetadataStore", "SQLiteTx"]

_SCHEMA = """
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
    source_metadata TEXT NOT NULL DEFAULT '{}',
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
    source_metadata TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (session_id, path)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    repo_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    path TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    part_size INTEGER
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


def _add_column(conn: sqlite3.Connection, table: str, column: str, definition: str) -> None:
    """Add a column unless the table already has it."""
    columns = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}
    if column in columns:
        return
    try:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    except sqlite3.OperationalError as error:
        # Another process sharing the database may have added it between the check and here.
        if "duplicate column" not in str(error):
            raise


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database created by an earlier release up to the current schema (idempotent)."""
    # Uploads started before in-place multipart existed have no part size: they stay one blob per part.
    _add_column(conn, "uploads", "part_size", "INTEGER")
    # Versions written before imports existed have no origin to report.
    _add_column(conn, "versions", "source_metadata", "TEXT NOT NULL DEFAULT '{}'")
    _add_column(conn, "staged", "source_metadata", "TEXT NOT NULL DEFAULT '{}'")


class SQLiteTx(HistoryQueries, SessionQueries):
    """The ``MetadataTx`` methods, bound to one connection inside one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


class SQLiteMetadataStore:
    """``MetadataStore`` on one SQLite database file in WAL mode.

    Args:
        path: The database file; created with its schema when missing.
        busy_timeout: Seconds a writer waits for another process's write lock.

    """

    def __init__(self, path: Path, *, busy_timeout: float = 60.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._pool: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        conn = self._connect()
        try:
            conn.executescript(_SCHEMA)
            _migrate(conn)
        finally:
            self._release(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            private_database(Path(self.path)),
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-16000")
        with self._pool_lock:
            self._all.append(conn)
        return conn

    def _acquire(self) -> sqlite3.Connection:
        with self._pool_lock:
            if self._closed:
                raise RuntimeError("metadata store is closed")
            if self._pool:
                return self._pool.pop()
        return self._connect()

    def _release(self, conn: sqlite3.Connection) -> None:
        with self._pool_lock:
            if self._closed:
                conn.close()
            else:
                self._pool.append(conn)

    @contextmanager
    def read(self) -> Iterator[SQLiteTx]:
        """Open a read transaction: every query inside sees the same snapshot.

        Yields:
            The transaction's query interface.

        """
        conn = self._acquire()
        try:
            conn.execute("BEGIN")
            try:
                yield SQLiteTx(conn)
            finally:
                conn.execute("ROLLBACK")
        finally:
            self._release(conn)

    @contextmanager
    def write(self) -> Iterator[SQLiteTx]:
        """Open a write transaction; it commits when the block ends and rolls back on any exception.

        Yields:
            The transaction's query interface.

        """
        conn = self._acquire()
        try:
            with self._write_lock:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield SQLiteTx(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        finally:
            self._release(conn)

    def close(self) -> None:
        """Close every connection; later transactions fail."""
        with self._pool_lock:
            self._closed = True
            connections, self._all, self._pool = self._all, [], []
        for conn in connections:
            conn.close()
