"""The IAM generation shared by the replicas of a cluster (metadata on PostgreSQL only).

Each process caches verified API keys (`tilde.server.auth.Authenticator`) and effective rights
(`tilde.server.iam.evaluate.Authorizer`) until its registry's IAM generation moves. With one process, a change
bumps that counter in memory. With several replicas, a change made through replica A must also hold on
replica B for B's very next request, so on PostgreSQL the registry schema has a one-row table
``iam_generation``: every IAM change increments it, and every request reads it once before it authenticates
(`SharedGeneration.read`, one indexed single-row ``SELECT`` on a connection kept for the purpose). A request
that arrives after a change committed therefore reads the new value, and the process drops its caches before
using them. Notifications would be cheaper but arrive asynchronously, which leaves a window; this read leaves
none.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from tilde.server._db import DatabaseUnavailable, Migration, apply_migrations

__all__ = ["SharedGeneration"]

_MIGRATIONS = (
    Migration(
        1,
        "the IAM generation every replica reads",
        "CREATE TABLE IF NOT EXISTS iam_generation (id INTEGER PRIMARY KEY, value INTEGER NOT NULL);"
        "INSERT OR IGNORE INTO iam_generation (id, value) VALUES (1, 0);",
    ),
)


class SharedGeneration:
    """The ``iam_generation`` row of one PostgreSQL registry schema.

    Args:
        pool: The registry's connection pool (`tilde.server._db_postgres.SharedPool`).

    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        with pool.transaction(migrate_lock=True) as conn:
            apply_migrations(conn, "iam_generation", _MIGRATIONS)
        schema = pool.database.schema
        self._select = f"SELECT value FROM {schema}.iam_generation WHERE id = 1"
        self._url: str = pool.database.url
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def read(self) -> int:
        """Return the current value (one round trip on this object's own connection).

        Raises:
            DatabaseUnavailable: PostgreSQL cannot be reached.

        """
        with self._lock:
            for attempt in range(2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
                    row = self._conn.execute(self._select).fetchone()
                    return int(row[0]) if row else 0
                except psycopg.OperationalError as error:
                    # A connection the database dropped (restart, fail-over) is replaced once.
                    self._drop()
                    if attempt == 1:
                        raise DatabaseUnavailable(
                            f"the database is unavailable ({type(error).__name__}); try again"
                        ) from None
        raise AssertionError("unreachable")

    def bump(self, db: Any | None = None) -> None:
        """Increment the value: in the caller's transaction ``db`` when given, else as its own statement."""
        sql = "UPDATE iam_generation SET value = value + 1 WHERE id = 1"
        if db is not None:
            db.execute(sql)
            return
        with self._pool.transaction() as conn:
            conn.execute(sql)

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def close(self) -> None:
        """Close the reading connection."""
        with self._lock:
            self._drop()
