"""SQLite queries for repositories, commits and committed object versions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from tilde.server.storage._time import from_micros, to_micros
from tilde.server.storage.metadata import LIVE_SEQ, KeyRange, RepoRecord, VersionRecord
from tilde.server.storage.paths import prefix_upper_bound
from tilde.server.storage.types import Actor, CommitInfo

__all__ = ["HistoryQueries", "dump_metadata", "key_range_sql", "load_metadata", "version_from_row"]

_VERSION_COLUMNS = "path, blob_key, size, sha256, content_type, metadata, modified_us, source_metadata"
_COMMIT_COLUMNS = (
    "repo_id, seq, id, parent_id, message, committer_type, committer_id, committer_name, metadata, "
    "created_us, tree_id, object_count, total_size"
)


def dump_metadata(metadata: Mapping[str, str]) -> str:
    """Serialise user metadata for a TEXT column."""
    return json.dumps(dict(metadata), sort_keys=True, separators=(",", ":")) if metadata else "{}"


def load_metadata(text: str) -> dict[str, str]:
    """Parse a metadata TEXT column."""
    if text == "{}":
        return {}
    value = json.loads(text)
    return {str(k): str(v) for k, v in value.items()}


def key_range_sql(keys: KeyRange, column: str = "path") -> tuple[str, list[object]]:
    """Return SQL conditions (starting with ``AND``) selecting ``keys`` on ``column``, and parameters."""
    sql = f" AND {column} {'>=' if keys.inclusive else '>'} ?"
    params: list[object] = [keys.start]
    if keys.end is not None:
        sql += f" AND {column} < ?"
        params.append(keys.end)
    return sql, params


def version_from_row(row: tuple[Any, ...]) -> VersionRecord:
    """Build a version from the first columns of a row, in ``_VERSION_COLUMNS`` order."""
    path, blob_key, size, sha256, content_type, metadata, modified_us, source = row[:8]
    return VersionRecord(
        path=str(path),
        blob_key=str(blob_key),
        size=int(size),
        sha256=str(sha256),
        content_type=str(content_type),
        metadata=load_metadata(str(metadata)),
        modified_us=int(modified_us),
        source_metadata=load_metadata(str(source)),
    )


def _commit(row: tuple[Any, ...]) -> CommitInfo:
    (repo_id, seq, cid, parent, message, c_type, c_id, c_name, metadata, created_us, tree, count, total) = row
    return CommitInfo(
        id=str(cid),
        repo_id=str(repo_id),
        seq=int(seq),
        parent_id=None if parent is None else str(parent),
        message=str(message),
        committer=Actor(type=str(c_type), id=str(c_id), name=str(c_name)),
        metadata=load_metadata(str(metadata)),
        created_at=from_micros(int(created_us)),
        tree_id=str(tree),
        object_count=int(count),
        total_size=int(total),
    )


class HistoryQueries:
    """Repository, commit and version queries (mixed into ``SQLiteTx``)."""

    conn: sqlite3.Connection

    def get_repo(self, repo_id: str) -> RepoRecord | None:
        """Return a repository's head record."""
        row = self.conn.execute(
            "SELECT head_seq, head_commit_id FROM repos WHERE repo_id = ?", (repo_id,)
        ).fetchone()
        return None if row is None else RepoRecord(repo_id, int(row[0]), row[1])

    def create_repo(self, repo_id: str, created_us: int) -> None:
        """Create an empty repository (no-op when it exists)."""
        self.conn.execute(
            "INSERT OR IGNORE INTO repos (repo_id, head_seq, head_commit_id, created_us)"
            " VALUES (?, 0, NULL, ?)",
            (repo_id, created_us),
        )

    def delete_repo(self, repo_id: str) -> None:
        """Delete a repository with its commits, versions, sessions and uploads."""
        conn = self.conn
        conn.execute(
            "DELETE FROM staged WHERE session_id IN (SELECT id FROM sessions WHERE repo_id = ?)", (repo_id,)
        )
        conn.execute(
            "DELETE FROM upload_parts WHERE upload_id IN (SELECT id FROM uploads WHERE repo_id = ?)",
            (repo_id,),
        )
        for table in ("uploads", "sessions", "versions", "commits", "repos"):
            conn.execute(f"DELETE FROM {table} WHERE repo_id = ?", (repo_id,))

    def set_head(self, repo_id: str, seq: int, commit_id: str) -> None:
        """Move a repository's head."""
        self.conn.execute(
            "UPDATE repos SET head_seq = ?, head_commit_id = ? WHERE repo_id = ?", (seq, commit_id, repo_id)
        )

    def insert_commit(self, commit: CommitInfo) -> None:
        """Record a commit."""
        self.conn.execute(
            f"INSERT INTO commits ({_COMMIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                commit.repo_id,
                commit.seq,
                commit.id,
                commit.parent_id,
                commit.message,
                commit.committer.type,
                commit.committer.id,
                commit.committer.name,
                dump_metadata(commit.metadata),
                to_micros(commit.created_at),
                commit.tree_id,
                commit.object_count,
                commit.total_size,
            ),
        )

    def get_commit(self, repo_id: str, commit_id: str) -> CommitInfo | None:
        """Return a commit by id."""
        row = self.conn.execute(
            f"SELECT {_COMMIT_COLUMNS} FROM commits WHERE repo_id = ? AND id = ?", (repo_id, commit_id)
        ).fetchone()
        return None if row is None else _commit(row)

    def get_commit_at(self, repo_id: str, seq: int) -> CommitInfo | None:
        """Return the commit with a sequence number."""
        row = self.conn.execute(
            f"SELECT {_COMMIT_COLUMNS} FROM commits WHERE repo_id = ? AND seq = ?", (repo_id, seq)
        ).fetchone()
        return None if row is None else _commit(row)

    def commits_with_prefix(self, repo_id: str, prefix: str, limit: int) -> list[CommitInfo]:
        """Return commits whose id starts with ``prefix``."""
        rows = self.conn.execute(
            f"SELECT {_COMMIT_COLUMNS} FROM commits WHERE repo_id = ? AND id >= ? AND id < ? LIMIT ?",
            (repo_id, prefix, prefix_upper_bound(prefix) or "\U0010ffff", limit),
        ).fetchall()
        return [_commit(row) for row in rows]

    def commits_before(self, repo_id: str, max_seq: int, limit: int) -> list[CommitInfo]:
        """Return commits with ``seq <= max_seq``, newest first."""
        rows = self.conn.execute(
            f"SELECT {_COMMIT_COLUMNS} FROM commits WHERE repo_id = ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
            (repo_id, max_seq, limit),
        ).fetchall()
        return [_commit(row) for row in rows]

    def version_at(self, repo_id: str, path: str, seq: int) -> VersionRecord | None:
        """Return the version of ``path`` visible at ``seq``."""
        row = self.conn.execute(
            f"SELECT {_VERSION_COLUMNS}, died_seq FROM versions"
            " WHERE repo_id = ? AND path = ? AND born_seq <= ?"
            " ORDER BY born_seq DESC LIMIT 1",
            (repo_id, path, seq),
        ).fetchone()
        if row is None or int(row[8]) <= seq:
            return None
        return version_from_row(row)

    def versions_at(self, repo_id: str, seq: int, keys: KeyRange, limit: int) -> list[VersionRecord]:
        """Return versions visible at ``seq`` within ``keys``, in path order."""
        bounds, params = key_range_sql(keys)
        head = self.get_repo(repo_id)
        if head is not None and head.head_seq == seq:
            # The head's tree is exactly the live rows: one range scan of the versions_live index.
            sql = (
                f"SELECT {_VERSION_COLUMNS} FROM versions INDEXED BY versions_live"
                f" WHERE repo_id = ? AND died_seq = ?{bounds} ORDER BY path LIMIT ?"
            )
            args: list[object] = [repo_id, LIVE_SEQ, *params, limit]
        else:
            sql = (
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE repo_id = ?{bounds}"
                " AND born_seq <= ? AND died_seq > ? ORDER BY path LIMIT ?"
            )
            args = [repo_id, *params, seq, seq, limit]
        return [version_from_row(row) for row in self.conn.execute(sql, args)]

    def changed_paths(
        self, repo_id: str, low_seq: int, high_seq: int, keys: KeyRange, limit: int
    ) -> list[str]:
        """Return distinct paths with a version born or closed in ``(low_seq, high_seq]``, in path order."""
        bounds, params = key_range_sql(keys)
        sql = (
            "SELECT path FROM versions INDEXED BY versions_born"
            f" WHERE repo_id = ? AND born_seq > ? AND born_seq <= ?{bounds}"
            " UNION SELECT path FROM versions INDEXED BY versions_live WHERE repo_id = ? AND died_seq > ?"
            f" AND died_seq <= ?{bounds} ORDER BY path LIMIT ?"
        )
        args = [repo_id, low_seq, high_seq, *params, repo_id, low_seq, high_seq, *params, limit]
        return [str(row[0]) for row in self.conn.execute(sql, args)]

    def apply_changes(
        self, repo_id: str, seq: int, changes: Iterable[tuple[str, VersionRecord | None]]
    ) -> tuple[list[VersionRecord], list[VersionRecord]]:
        """Close the live version of each path and insert the new ones (None = deletion) born at ``seq``.

        Returns:
            The closed versions and the inserted versions.

        """
        conn = self.conn
        closed: list[VersionRecord] = []
        inserted: list[VersionRecord] = []
        for path, new in changes:
            row = conn.execute(
                f"SELECT {_VERSION_COLUMNS}, born_seq FROM versions INDEXED BY versions_live"
                " WHERE repo_id = ? AND died_seq = ? AND path = ?",
                (repo_id, LIVE_SEQ, path),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE versions SET died_seq = ? WHERE repo_id = ? AND path = ? AND born_seq = ?",
                    (seq, repo_id, path, row[8]),
                )
                closed.append(version_from_row(row))
            if new is not None:
                conn.execute(
                    f"INSERT INTO versions (repo_id, born_seq, died_seq, {_VERSION_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        repo_id,
                        seq,
                        LIVE_SEQ,
                        path,
                        new.blob_key,
                        new.size,
                        new.sha256,
                        new.content_type,
                        dump_metadata(new.metadata),
                        new.modified_us,
                        dump_metadata(new.source_metadata),
                    ),
                )
                inserted.append(new)
        return closed, inserted
