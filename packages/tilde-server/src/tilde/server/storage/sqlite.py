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

from tilde.server._db import apply_migrations
from tilde.server._private import private_database
from tilde.server.storage.metadata import RepoRecord
from tilde.server.storage.schema import METADATA_COMPONENT, METADATA_MIGRATIONS
from tilde.server.storage.sqlite_history import HistoryQueries
from tilde.server.storage.sqlite_sessions import SessionQueries

__all__ = ["SQLiteMetadataStore", "SQLiteTx"]


class SQLiteTx(HistoryQueries, SessionQueries):
    """The ``MetadataTx`` methods, bound to one connection inside one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def lock_repo(self, repo_id: str) -> RepoRecord | None:
        """Return a repository's head record (SQLite's writers are serialised: nothing to lock)."""
        return self.get_repo(repo_id)


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
            conn.execute("BEGIN IMMEDIATE")
            try:
                apply_migrations(conn, METADATA_COMPONENT, METADATA_MIGRATIONS)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
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
    def point_read(self) -> Iterator[SQLiteTx]:
        """Run one query outside an explicit transaction (autocommit: the statement is its own snapshot).

        Yields:
            The query interface; the block must run a single statement.

        """
        conn = self._acquire()
        try:
            yield SQLiteTx(conn)
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
