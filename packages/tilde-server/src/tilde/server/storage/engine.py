"""StorageEngine: versioned repositories on top of a ``MetadataStore`` and a ``BlobStore``.

History is linear per repository. A commit closes the previous version of each changed path and inserts the
new ones, so it costs O(changes); its tree id and counters are derived from the parent's the same way.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from pathlib import Path

from tilde.server.storage._base import ActorLike, check_metadata, to_actor, to_session_info
from tilde.server.storage._reads import ReadsMixin
from tilde.server.storage._time import from_micros, now_micros
from tilde.server.storage._writes import WritesMixin
from tilde.server.storage.blobs import BlobStore, LocalBlobStore
from tilde.server.storage.errors import Conflict, InvalidArgument, NotFound, SessionClosed
from tilde.server.storage.metadata import (
    KeyRange,
    MetadataStore,
    MetadataTx,
    RepoRecord,
    SessionRecord,
    VersionRecord,
)
from tilde.server.storage.sqlite import SQLiteMetadataStore
from tilde.server.storage.treehash import EMPTY_TREE, update_tree_id
from tilde.server.storage.types import Actor, CommitInfo, CommitOutcome, Page, SessionInfo

__all__ = ["ActorLike", "StorageEngine"]

# How many conflicting paths a Conflict error names.
_CONFLICT_REPORT = 20
_BATCH = 1000


class StorageEngine(ReadsMixin, WritesMixin):
    """Versioned object storage: repositories, sessions, commits, listings and blobs (thread-safe).

    Args:
        meta: Where versioning metadata lives.
        blobs: Where object bytes live (also ``engine.blobs``).

    """

    def __init__(self, meta: MetadataStore, blobs: BlobStore) -> None:
        super().__init__(meta, blobs)

    @classmethod
    def open(cls, data_dir: Path) -> StorageEngine:
        """Open (creating when needed) the engine stored in ``data_dir``.

        Metadata goes to ``data_dir/meta.sqlite3`` (SQLite, WAL), blobs under ``data_dir/blobs``.

        Args:
            data_dir: The data directory.

        Returns:
            The engine; ``close()`` it when done.

        """
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(SQLiteMetadataStore(data_dir / "meta.sqlite3"), LocalBlobStore(data_dir / "blobs"))

    def close(self) -> None:
        """Release database connections."""
        self.meta.close()

    # Repositories

    def init_repository(self, repo_id: str) -> None:
        """Create an empty repository (no commits); a no-op when it exists.

        Args:
            repo_id: The repository id, chosen by the caller.

        Raises:
            InvalidArgument: Empty id.

        """
        if not repo_id:
            raise InvalidArgument("repository id must not be empty")
        with self.meta.write() as tx:
            tx.create_repo(repo_id, now_micros())

    def drop_repository(self, repo_id: str) -> None:
        """Forget a repository: its commits, versions, sessions and uploads (blobs stay).

        Args:
            repo_id: The repository; unknown ids are ignored.

        """
        with self.meta.write() as tx:
            tx.delete_repo(repo_id)

    # Commits

    def head(self, repo_id: str) -> CommitInfo | None:
        """Return the latest commit, or None for a repository without commits.

        Raises:
            NotFound: Unknown repository.

        """
        return self.resolve_ref(repo_id, None)

    def get_commit(self, repo_id: str, commit_id: str) -> CommitInfo:
        """Return a commit by id.

        Raises:
            NotFound: Unknown repository or commit.

        """
        with self.meta.read() as tx:
            self._repo(tx, repo_id)
            commit = tx.get_commit(repo_id, commit_id) if commit_id else None
        if commit is None:
            raise NotFound(f"commit '{commit_id}'")
        return commit

    def log(
        self, repo_id: str, *, ref: str | None = None, after: str | None = None, limit: int = 100
    ) -> Page[CommitInfo]:
        """Return history newest first, starting at ``ref`` (default head).

        Args:
            repo_id: The repository.
            ref: The newest commit to include.
            after: Cursor: a commit id; only older commits follow.
            limit: Page size.

        Returns:
            One page; the cursor is the last commit's id.

        Raises:
            NotFound: Unknown repository, ref or cursor commit.
            InvalidArgument: Bad limit.

        """
        if limit < 1:
            raise InvalidArgument("limit must be at least 1")
        with self.meta.read() as tx:
            start = self._resolve(tx, repo_id, ref)
            if start is None:
                return Page(items=[], has_more=False, next_cursor=None)
            max_seq = start.seq
            if after:
                cursor = tx.get_commit(repo_id, after)
                if cursor is None:
                    raise NotFound(f"commit '{after}'")
                max_seq = min(max_seq, cursor.seq - 1)
            commits = tx.commits_before(repo_id, max_seq, limit + 1) if max_seq > 0 else []
        has_more = len(commits) > limit
        commits = commits[:limit]
        return Page(items=commits, has_more=has_more, next_cursor=commits[-1].id if has_more else None)

    def _commit(
        self,
        tx: MetadataTx,
        repo: RepoRecord,
        changes: list[tuple[str, VersionRecord | None]],
        *,
        message: str,
        committer: Actor,
        metadata: Mapping[str, str],
    ) -> CommitInfo:
        """Apply changes on top of the head as a new commit, inside the caller's write transaction."""
        parent = tx.get_commit_at(repo.repo_id, repo.head_seq) if repo.head_seq else None
        seq = repo.head_seq + 1
        closed, inserted = tx.apply_changes(repo.repo_id, seq, changes)
        tree_id = update_tree_id(
            parent.tree_id if parent else EMPTY_TREE,
            added=((v.path, '"' + v.sha256 + '"') for v in inserted),
            removed=((v.path, '"' + v.sha256 + '"') for v in closed),
        )
        created_us = now_micros()
        identity = json.dumps(
            [repo.repo_id, seq, repo.head_commit_id, tree_id, message, created_us, uuid.uuid4().hex],
            separators=(",", ":"),
        )
        commit = CommitInfo(
            id=hashlib.sha256(identity.encode("utf-8")).hexdigest(),
            repo_id=repo.repo_id,
            seq=seq,
            parent_id=repo.head_commit_id,
            message=message,
            committer=committer,
            metadata=dict(metadata),
            created_at=from_micros(created_us),
            tree_id=tree_id,
            object_count=(parent.object_count if parent else 0) + len(inserted) - len(closed),
            total_size=(parent.total_size if parent else 0)
            + sum(v.size for v in inserted)
            - sum(v.size for v in closed),
        )
        tx.insert_commit(commit)
        tx.set_head(repo.repo_id, seq, commit.id)
        return commit

    # Sessions

    def create_session(self, repo_id: str, actor: ActorLike) -> SessionInfo:
        """Open a session based on the current head.

        Args:
            repo_id: The repository.
            actor: Who opens it.

        Returns:
            The new session (a fresh uuid4 id).

        Raises:
            NotFound: Unknown repository.

        """
        with self.meta.write() as tx:
            repo = self._repo(tx, repo_id)
            session = SessionRecord(
                id=str(uuid.uuid4()),
                repo_id=repo_id,
                base_seq=repo.head_seq,
                base_commit_id=repo.head_commit_id,
                state="open",
                created_by=to_actor(actor),
                created_us=now_micros(),
            )
            tx.insert_session(session)
        return to_session_info(session)

    def get_session(self, repo_id: str, session_id: str) -> SessionInfo:
        """Return a session in any state.

        Raises:
            NotFound: Unknown repository or session.

        """
        with self.meta.read() as tx:
            self._repo(tx, repo_id)
            return to_session_info(self._session(tx, repo_id, session_id))

    def has_changes(self, repo_id: str, session_id: str) -> bool:
        """Whether the session has staged changes.

        Raises:
            NotFound: Unknown repository or session.

        """
        with self.meta.read() as tx:
            self._repo(tx, repo_id)
            self._session(tx, repo_id, session_id)
            return tx.has_staged(session_id)

    def rollback_session(self, repo_id: str, session_id: str) -> None:
        """Discard an open or pending session and everything it staged.

        Raises:
            NotFound: Unknown repository or session.
            SessionClosed: The session was already committed or rolled back.

        """
        with self.meta.write() as tx:
            self._repo(tx, repo_id)
            session = self._session(tx, repo_id, session_id)
            if session.state not in ("open", "pending_approval"):
                raise SessionClosed(f"session '{session_id}' is {session.state.replace('_', ' ')}")
            tx.clear_staged(session_id)
            tx.delete_session_uploads(session_id)
            tx.update_session(_replace(session, state="rolled_back", pending_actor=None))

    @staticmethod
    def _check_conflicts(tx: MetadataTx, repo: RepoRecord, session: SessionRecord) -> None:
        if repo.head_seq == session.base_seq:
            return
        paths = tx.conflicting_paths(repo.repo_id, session.id, session.base_seq, _CONFLICT_REPORT)
        if paths:
            shown = ", ".join(paths[:5]) + (", ..." if len(paths) > 5 else "")
            raise Conflict(f"paths changed by a commit after the session started: {shown}", paths)

    @staticmethod
    def _staged_changes(tx: MetadataTx, session_id: str) -> list[tuple[str, VersionRecord | None]]:
        changes: list[tuple[str, VersionRecord | None]] = []
        keys = KeyRange()
        while True:
            rows = tx.staged_rows(session_id, keys, _BATCH)
            changes.extend((row.path, None if row.deleted else row) for row in rows)
            if len(rows) < _BATCH:
                return changes
            keys = KeyRange(rows[-1].path, False)

    def commit_session(
        self,
        repo_id: str,
        session_id: str,
        message: str = "",
        actor: ActorLike | None = None,
        metadata: Mapping[str, str] | None = None,
        *,
        require_approval: bool = False,
        principal: ActorLike | None = None,
    ) -> CommitOutcome:
        """Commit a session's staged changes atomically on top of the current head.

        Args:
            repo_id: The repository.
            session_id: An open session.
            message: Commit message.
            actor: Who commits (``principal`` is accepted as an alias).
            metadata: Commit metadata.
            require_approval: Park the session as ``pending_approval`` instead of committing.
            principal: Alias of ``actor``.

        Returns:
            ``committed`` with the commit; ``approval_required``; or ``no_changes`` with the current head when
            nothing was staged (the session is closed either way).

        Raises:
            NotFound: Unknown repository or session.
            SessionClosed: The session is not open.
            Conflict: A commit after the session's base changed a staged path (nothing changes; the session
                stays open and can be rolled back).
            InvalidArgument: No actor, or bad metadata.

        """
        who = actor if actor is not None else principal
        if who is None:
            raise InvalidArgument("commit needs an actor")
        committer = to_actor(who)
        meta = check_metadata(metadata)
        with self.meta.write() as tx:
            repo = self._repo(tx, repo_id)
            session = self._open_session(tx, repo_id, session_id)
            if not tx.has_staged(session_id):
                tx.update_session(_replace(session, state="committed"))
                head = tx.get_commit_at(repo_id, repo.head_seq) if repo.head_seq else None
                return CommitOutcome(status="no_changes", commit=head)
            self._check_conflicts(tx, repo, session)
            if require_approval:
                parked = _replace(
                    session,
                    state="pending_approval",
                    pending_message=message,
                    pending_metadata=meta,
                    pending_actor=committer,
                )
                tx.update_session(parked)
                return CommitOutcome(status="approval_required", commit=None)
            commit = self._commit(
                tx,
                repo,
                self._staged_changes(tx, session_id),
                message=message,
                committer=committer,
                metadata=meta,
            )
            tx.clear_staged(session_id)
            tx.delete_session_uploads(session_id)
            tx.update_session(_replace(session, state="committed", commit_id=commit.id))
        return CommitOutcome(status="committed", commit=commit)

    def approve_session(
        self,
        repo_id: str,
        session_id: str,
        *,
        actor: ActorLike,
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> CommitInfo:
        """Approve a session pending approval and commit it.

        The commit is attributed to whoever asked for it; the message defaults to theirs and ``metadata`` is
        merged over theirs.

        Args:
            repo_id: The repository.
            session_id: A session in ``pending_approval``.
            actor: Who approves.
            message: Replaces the pending message when given.
            metadata: Merged over the pending metadata.

        Returns:
            The new commit.

        Raises:
            NotFound: Unknown repository or session.
            SessionClosed: The session is not pending approval.
            Conflict: A commit after the session's base changed a staged path (the session stays pending).

        """
        approver = to_actor(actor)
        extra = check_metadata(metadata)
        with self.meta.write() as tx:
            repo = self._repo(tx, repo_id)
            session = self._session(tx, repo_id, session_id)
            if session.state != "pending_approval":
                raise SessionClosed(f"session '{session_id}' is not pending approval")
            self._check_conflicts(tx, repo, session)
            commit = self._commit(
                tx,
                repo,
                self._staged_changes(tx, session_id),
                message=message if message is not None else (session.pending_message or ""),
                committer=session.pending_actor or approver,
                metadata={**session.pending_metadata, **extra},
            )
            tx.clear_staged(session_id)
            tx.delete_session_uploads(session_id)
            tx.update_session(_replace(session, state="committed", commit_id=commit.id))
        return commit

    # Revert

    def revert(
        self,
        repo_id: str,
        commit_id: str,
        *,
        actor: ActorLike,
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> CommitInfo:
        """Commit, on top of the head, the state each path changed by ``commit_id`` had before it.

        Args:
            repo_id: The repository.
            commit_id: The commit to undo.
            actor: Who reverts.
            message: Defaults to ``Revert "<original message>"``.
            metadata: Commit metadata.

        Returns:
            The new commit.

        Raises:
            NotFound: Unknown repository or commit.
            InvalidArgument: The commit is the first one (it has no parent).

        """
        committer = to_actor(actor)
        meta = check_metadata(metadata)
        with self.meta.write() as tx:
            repo = self._repo(tx, repo_id)
            target = tx.get_commit(repo_id, commit_id)
            if target is None:
                raise NotFound(f"commit '{commit_id}'")
            if target.parent_id is None:
                raise InvalidArgument("the first commit has no parent to revert to", code="invalid_revert")
            before = target.seq - 1
            now = now_micros()
            changes: list[tuple[str, VersionRecord | None]] = []
            keys = KeyRange()
            while True:
                paths = tx.changed_paths(repo_id, before, target.seq, keys, _BATCH)
                for path in paths:
                    old = tx.version_at(repo_id, path, before)
                    changes.append((path, None if old is None else _replace_version(old, now)))
                if len(paths) < _BATCH:
                    break
                keys = KeyRange(paths[-1], False)
            return self._commit(
                tx,
                repo,
                changes,
                message=message if message is not None else f'Revert "{target.message}"',
                committer=committer,
                metadata=meta,
            )


def _replace(session: SessionRecord, **changes: object) -> SessionRecord:
    from dataclasses import replace

    return replace(session, **changes)  # type: ignore[arg-type]


def _replace_version(version: VersionRecord, modified_us: int) -> VersionRecord:
    from dataclasses import replace

    return replace(version, modified_us=modified_us)
