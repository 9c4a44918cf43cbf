"""Session lifecycle: open, commit (with conflict detection and approval), approve, roll back."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace

from tilde.server.storage._base import ActorLike, check_metadata, to_actor, to_session_info
from tilde.server.storage._commits import BATCH, CommitsMixin
from tilde.server.storage._time import now_micros
from tilde.server.storage.errors import Conflict, InvalidArgument, SessionClosed
from tilde.server.storage.metadata import KeyRange, MetadataTx, RepoRecord, SessionRecord, VersionRecord
from tilde.server.storage.types import CommitInfo, CommitOutcome, SessionInfo

__all__ = ["SessionsMixin"]

# How many conflicting paths a Conflict error names.
_CONFLICT_REPORT = 20


class SessionsMixin(CommitsMixin):
    """Sessions: staged changes on top of a base commit, committed atomically."""

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
            uploads = tx.list_uploads(session_id=session_id)
            tx.delete_session_uploads(session_id)
            tx.update_session(replace(session, state="rolled_back", pending_actor=None))
        self._discard_upload_files(uploads)

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
            rows = tx.staged_rows(session_id, keys, BATCH)
            changes.extend((row.path, None if row.deleted else row) for row in rows)
            if len(rows) < BATCH:
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
            repo = self._locked_repo(tx, repo_id)
            session = self._open_session(tx, repo_id, session_id)
            # Uploads still unfinished when the session closes can never complete; in-place ones hold a file.
            uploads = tx.list_uploads(session_id=session_id)
            if not tx.has_staged(session_id):
                tx.update_session(replace(session, state="committed"))
                tx.delete_session_uploads(session_id)
                head = tx.get_commit_at(repo_id, repo.head_seq) if repo.head_seq else None
                outcome = CommitOutcome(status="no_changes", commit=head)
            else:
                self._check_conflicts(tx, repo, session)
                if require_approval:
                    parked = replace(
                        session,
                        state="pending_approval",
                        pending_message=message,
                        pending_metadata=meta,
                        pending_actor=committer,
                    )
                    tx.update_session(parked)
                    # Approval or rollback settles the session later; its uploads go then.
                    uploads = []
                    outcome = CommitOutcome(status="approval_required", commit=None)
                else:
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
                    tx.update_session(replace(session, state="committed", commit_id=commit.id))
                    outcome = CommitOutcome(status="committed", commit=commit)
        self._discard_upload_files(uploads)
        return outcome

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
            repo = self._locked_repo(tx, repo_id)
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
            uploads = tx.list_uploads(session_id=session_id)
            tx.delete_session_uploads(session_id)
            tx.update_session(replace(session, state="committed", commit_id=commit.id))
        self._discard_upload_files(uploads)
        return commit
