"""A small SQLite helper: one connection, one lock, explicit transactions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tilde.server._private import private_database


def page_of(rows: Sequence[Any], limit: int) -> tuple[list[Any], bool]:
    """Split ``limit + 1`` fetched rows into ``(page, has_more)``."""
    return list(rows[:limit]), len(rows) > limit


class SqliteStore:
    """Base for stores kept in one SQLite file (WAL), safe to call from any thread.

    Args:
        path: The database file.
        schema: ``CREATE … IF NOT EXISTS`` statements run on open.

    """

    def __init__(self, path: Path, schema: str) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(private_database(Path(path))), check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        with self._lock:
            self._db.executescript(schema)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def _page(self, sql: str, *args: Any, limit: int) -> tuple[list[sqlite3.Row], bool]:
        """Run ``sql``, whose last parameter is its ``LIMIT``, for one page: ``(rows, has_more)``."""
        return page_of(self._all(sql, *args, limit + 1), limit)
