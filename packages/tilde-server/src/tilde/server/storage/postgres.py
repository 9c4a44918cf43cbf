"""PostgreSQL implementation of ``MetadataStore`` (``tilde-server serve --database-url postgresql://…``).

The queries are the SQLite store's (`HistoryQueries`, `SessionQueries`), rewritten for PostgreSQL by
`tilde.server._db_postgres`. Reads run as ``REPEATABLE READ READ ONLY`` transactions (one snapshot, never
blocked, never failing on serialisation); writes run as ``READ COMMITTED`` transactions in which a commit
first locks its repository's row (``SELECT … FOR UPDATE``, `lock_repo`) and every session look-up locks the
session's row. Concurrent commits to one repository therefore take turns: the second one's lock returns the
head the first one left, its conflict check then sees the first one's versions, and it either commits on top
or raises ``Conflict``. Commits to different repositories do not wait for each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from tilde.server._db import PostgresDatabase, apply_migrations
from tilde.server.storage.metadata import LIVE_SEQ, RepoRecord, VersionRecord
from tilde.server.storage.schema import METADATA_COMPONENT, METADATA_MIGRATIONS, METADATA_SCHEMA_V1
from tilde.server.storage.sqlite_history import _VERSION_COLUMNS as VERSION_COLUMNS
from tilde.server.storage.sqlite_history import HistoryQueries, dump_metadata, version_from_row
from tilde.server.storage.sqlite_sessions import SessionQueries

__all__ = ["PostgresMetadataStore", "PostgresTx"]

#: Paths per statement when a commit closes and inserts versions.
_BATCH = 1000


class PostgresTx(HistoryQueries, SessionQueries):
    """The ``MetadataTx`` methods, bound to one pooled connection inside one transaction."""

    def __init__(self, conn: Any, *, write: bool) -> None:
        self.conn = conn
        self.session_lock = " FOR UPDATE" if write else ""

    def lock_repo(self, repo_id: str) -> RepoRecord | None:
        """Return a repository's head record, locking its row until the transaction ends."""
        row = self.conn.execute(
            "SELECT head_seq, head_commit_id FROM repos WHERE repo_id = ? FOR UPDATE", (repo_id,)
        ).fetchone()
        return None if row is None else RepoRecord(repo_id, int(row[0]), row[1])

    def apply_changes(
        self, repo_id: str, seq: int, changes: Iterable[tuple[str, VersionRecord | None]]
    ) -> tuple[list[VersionRecord], list[VersionRecord]]:
        """Close the live version of each path and insert the new ones (None = deletion) born at ``seq``.

        The same rows as the SQLite store's, in a few statements per thousand paths instead of three per
        path: one ``UPDATE … WHERE path = ANY(…) RETURNING`` closes a batch, one pipelined ``executemany``
        inserts it.

        Returns:
            The closed versions and the inserted versions.

        """
        closed: list[VersionRecord] = []
        inserted: list[VersionRecord] = []
        batch: list[tuple[str, VersionRecord | None]] = []
        for change in changes:
            batch.append(change)
            if len(batch) == _BATCH:
                self._apply_batch(repo_id, seq, batch, closed, inserted)
                batch = []
        if batch:
            self._apply_batch(repo_id, seq, batch, closed, inserted)
        return closed, inserted

    def _apply_batch(
        self,
        repo_id: str,
        seq: int,
        batch: list[tuple[str, VersionRecord | None]],
        closed: list[VersionRecord],
        inserted: list[VersionRecord],
    ) -> None:
        rows = self.conn.execute(
            f"UPDATE versions SET died_seq = ? WHERE repo_id = ? AND died_seq = ? AND path = ANY(?)"
            f" RETURNING {VERSION_COLUMNS}",
            (seq, repo_id, LIVE_SEQ, [path for path, _ in batch]),
        ).fetchall()
        closed.extend(version_from_row(row) for row in rows)
        new = [(path, version) for path, version in batch if version is not None]
        if new:
            self.conn.executemany(
                f"INSERT INTO versions (repo_id, born_seq, died_seq, {VERSION_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        repo_id,
                        seq,
                        LIVE_SEQ,
                        path,
                        version.blob_key,
                        version.size,
                        version.sha256,
                        version.content_type,
                        dump_metadata(version.metadata),
                        version.modified_us,
                        dump_metadata(version.source_metadata),
                    )
                    for path, version in new
                ],
            )
            inserted.extend(version for _, version in new)


class PostgresMetadataStore:
    """``MetadataStore`` in a schema of a PostgreSQL database, through a connection pool.

    Args:
        database: The database URL and schema (``tilde_meta`` by default, see `tilde.server._db`).

    """

    def __init__(self, database: PostgresDatabase) -> None:
        from tilde.server._db_postgres import shared_pool

        self.database = database
        self._pool = shared_pool(database, METADATA_SCHEMA_V1)
        with self._pool.transaction(migrate_lock=True) as conn:
            apply_migrations(conn, METADATA_COMPONENT, METADATA_MIGRATIONS)

    @contextmanager
    def read(self) -> Iterator[PostgresTx]:
        """Open a read transaction: every query inside sees the same snapshot.

        Yields:
            The transaction's query interface.

        """
        with self._pool.transaction(read_only=True) as conn:
            yield PostgresTx(conn, write=False)

    def point_read(self) -> AbstractContextManager[PostgresTx]:
        """Open a read transaction for one query (the same as `read` on PostgreSQL)."""
        return self.read()

    @contextmanager
    def write(self) -> Iterator[PostgresTx]:
        """Open a write transaction; it commits when the block ends and rolls back on any exception.

        Yields:
            The transaction's query interface.

        """
        with self._pool.transaction() as conn:
            yield PostgresTx(conn, write=True)

    def close(self) -> None:
        """Give back this store's share of the connection pool."""
        self._pool.release()
