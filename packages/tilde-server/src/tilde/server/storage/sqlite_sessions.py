"""SQLite queries for sessions, staged changes and multipart uploads."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from tilde.server.storage.metadata import (
    LIVE_SEQ,
    KeyRange,
    PartRecord,
    SessionRecord,
    UploadRecord,
    VersionRecord,
)
from tilde.server.storage.sqlite_history import dump_metadata, key_range_sql, load_metadata, version_from_row
from tilde.server.storage.types import Actor

__all__ = ["SessionQueries"]

_SESSION_COLUMNS = (
    "id, repo_id, base_seq, base_commit_id, state, created_by, created_us, commit_id, pending_message, "
    "pending_metadata, pending_actor"
)
_STAGED_COLUMNS = (
    "path, blob_key, size, sha256, content_type, metadata, modified_us, source_metadata, deleted"
)
_UPLOAD_COLUMNS = "id, repo_id, session_id, path, created_us, part_size"


def _dump_actor(actor: Actor | None) -> str | None:
    return None if actor is None else json.dumps([actor.type, actor.id, actor.name])


def _load_actor(text: str | None) -> Actor | None:
    if text is None:
        return None
    kind, ident, name = json.loads(text)
    return Actor(type=str(kind), id=str(ident), name=str(name))


def _session(row: tuple[Any, ...]) -> SessionRecord:
    sid, repo_id, base_seq, base_commit, state, created_by, created_us, commit_id, message, meta, actor = row
    creator = _load_actor(created_by)
    assert creator is not None
    return SessionRecord(
        id=sid,
        repo_id=repo_id,
        base_seq=int(base_seq),
        base_commit_id=base_commit,
        state=state,
        created_by=creator,
        created_us=int(created_us),
        commit_id=commit_id,
        pending_message=message,
        pending_metadata=load_metadata(meta),
        pending_actor=_load_actor(actor),
    )


def _upload(row: tuple[Any, ...]) -> UploadRecord:
    part_size = None if row[5] is None else int(row[5])
    return UploadRecord(row[0], row[1], row[2], row[3], int(row[4]), part_size)


def _staged(row: tuple[Any, ...]) -> VersionRecord:
    record = version_from_row(row)
    if row[8]:
        return VersionRecord(
            path=record.path,
            blob_key="",
            size=0,
            sha256="",
            content_type="",
            metadata={},
            modified_us=record.modified_us,
            deleted=True,
        )
    return record


class SessionQueries:
    """Session, staging and upload queries (mixed into ``SQLiteTx``)."""

    conn: sqlite3.Connection
    #: Appended to the session look-up: PostgreSQL's write transactions lock the session row (`` FOR UPDATE``)
    #: so staging into a session and committing it take turns, as SQLite's serialised writers do.
    session_lock = ""

    def insert_session(self, session: SessionRecord) -> None:
        """Record a new session."""
        self.conn.execute(
            f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._session_values(session),
        )

    def update_session(self, session: SessionRecord) -> None:
        """Store a session's new state."""
        self.conn.execute(
            f"REPLACE INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._session_values(session),
        )

    @staticmethod
    def _session_values(session: SessionRecord) -> tuple[object, ...]:
        return (
            session.id,
            session.repo_id,
            session.base_seq,
            session.base_commit_id,
            session.state,
            _dump_actor(session.created_by),
            session.created_us,
            session.commit_id,
            session.pending_message,
            dump_metadata(session.pending_metadata),
            _dump_actor(session.pending_actor),
        )

    def get_session(self, session_id: str) -> SessionRecord | None:
        """Return a session."""
        row = self.conn.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?{self.session_lock}", (session_id,)
        ).fetchone()
        return None if row is None else _session(row)

    def get_staged(self, session_id: str, path: str) -> VersionRecord | None:
        """Return the staged row of a path."""
        row = self.conn.execute(
            f"SELECT {_STAGED_COLUMNS} FROM staged WHERE session_id = ? AND path = ?", (session_id, path)
        ).fetchone()
        return None if row is None else _staged(row)

    def put_staged(self, session_id: str, rows: Iterable[VersionRecord]) -> None:
        """Insert or replace staged rows."""
        self.conn.executemany(
            f"REPLACE INTO staged (session_id, {_STAGED_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    session_id,
                    row.path,
                    row.blob_key,
                    row.size,
                    row.sha256,
                    row.content_type,
                    dump_metadata(row.metadata),
                    row.modified_us,
                    dump_metadata(row.source_metadata),
                    1 if row.deleted else 0,
                )
                for row in rows
            ),
        )

    def remove_staged(self, session_id: str, path: str) -> None:
        """Forget a staged row."""
        self.conn.execute("DELETE FROM staged WHERE session_id = ? AND path = ?", (session_id, path))

    def staged_rows(self, session_id: str, keys: KeyRange, limit: int) -> list[VersionRecord]:
        """Return staged rows within ``keys`` in path order."""
        bounds, params = key_range_sql(keys)
        rows = self.conn.execute(
            f"SELECT {_STAGED_COLUMNS} FROM staged WHERE session_id = ?{bounds} ORDER BY path LIMIT ?",
            (session_id, *params, limit),
        )
        return [_staged(row) for row in rows]

    def has_staged(self, session_id: str) -> bool:
        """Whether a session staged anything."""
        row = self.conn.execute("SELECT 1 FROM staged WHERE session_id = ? LIMIT 1", (session_id,)).fetchone()
        return row is not None

    def clear_staged(self, session_id: str) -> None:
        """Forget all staged rows of a session."""
        self.conn.execute("DELETE FROM staged WHERE session_id = ?", (session_id,))

    def conflicting_paths(self, repo_id: str, session_id: str, base_seq: int, limit: int) -> list[str]:
        """Return staged paths that a commit after ``base_seq`` changed.

        A later commit changed a path when it wrote a version born after the base, or closed (deleted) the
        version that was live at the base; both checks are index seeks per staged path.
        """
        rows = self.conn.execute(
            "SELECT s.path FROM staged s WHERE s.session_id = :sid AND ("
            " EXISTS (SELECT 1 FROM versions v WHERE v.repo_id = :repo AND v.path = s.path"
            "         AND v.born_seq > :base)"
            " OR (SELECT v.died_seq FROM versions v WHERE v.repo_id = :repo AND v.path = s.path"
            "     AND v.born_seq <= :base ORDER BY v.born_seq DESC LIMIT 1) BETWEEN :base + 1 AND :live - 1"
            ") ORDER BY s.path LIMIT :limit",
            {"sid": session_id, "repo": repo_id, "base": base_seq, "live": LIVE_SEQ, "limit": limit},
        )
        return [str(row[0]) for row in rows]

    def insert_upload(self, upload: UploadRecord) -> None:
        """Record a new upload."""
        self.conn.execute(
            "INSERT INTO uploads (id, repo_id, session_id, path, created_us, part_size)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (upload.id, upload.repo_id, upload.session_id, upload.path, upload.created_us, upload.part_size),
        )

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        """Return an upload."""
        row = self.conn.execute(
            f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE id = ?", (upload_id,)
        ).fetchone()
        return None if row is None else _upload(row)

    def list_uploads(
        self, *, session_id: str | None = None, repo_id: str | None = None
    ) -> list[UploadRecord]:
        """Return the uploads of a session, of a repository, or (neither given) all of them."""
        if session_id is not None:
            rows = self.conn.execute(
                f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE session_id = ?", (session_id,)
            )
        elif repo_id is not None:
            rows = self.conn.execute(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE repo_id = ?", (repo_id,))
        else:
            rows = self.conn.execute(f"SELECT {_UPLOAD_COLUMNS} FROM uploads")
        return [_upload(row) for row in rows]

    def put_part(self, upload_id: str, part: PartRecord) -> None:
        """Insert or replace a part."""
        self.conn.execute(
            "REPLACE INTO upload_parts (upload_id, number, blob_key, size, sha256) VALUES (?, ?, ?, ?, ?)",
            (upload_id, part.number, part.blob_key, part.size, part.sha256),
        )

    def get_parts(self, upload_id: str) -> dict[int, PartRecord]:
        """Return an upload's parts by number."""
        rows = self.conn.execute(
            "SELECT number, blob_key, size, sha256 FROM upload_parts WHERE upload_id = ?", (upload_id,)
        )
        return {int(r[0]): PartRecord(int(r[0]), r[1], int(r[2]), r[3]) for r in rows}

    def delete_upload(self, upload_id: str) -> None:
        """Forget an upload and its parts."""
        self.conn.execute("DELETE FROM upload_parts WHERE upload_id = ?", (upload_id,))
        self.conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def delete_session_uploads(self, session_id: str) -> None:
        """Forget every upload of a session."""
        self.conn.execute(
            "DELETE FROM upload_parts WHERE upload_id IN (SELECT id FROM uploads WHERE session_id = ?)",
            (session_id,),
        )
        self.conn.execute("DELETE FROM uploads WHERE session_id = ?", (session_id,))

    def referenced_blob_keys(self) -> set[str]:
        """Return every blob key a version, staged row or upload part refers to."""
        rows = self.conn.execute(
            "SELECT blob_key FROM versions UNION SELECT blob_key FROM staged WHERE deleted = 0"
            " UNION SELECT blob_key FROM upload_parts"
        )
        return {str(row[0]) for row in rows}
