"""StorageEngine: versioned repositories on top of a metadata store and a blob store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

from tilde.server.storage.blobs import BlobStore
from tilde.server.storage.types import (
    BlobRef,
    ChangeItem,
    CommitInfo,
    CommitOutcome,
    ListingItem,
    ObjectVersion,
    Page,
    SessionInfo,
    ViewEntry,
)

__all__ = ["ActorLike", "StorageEngine"]


class ActorLike(Protocol):
    """Anything naming an actor: ``Actor`` or the HTTP layer's principal."""

    @property
    def type(self) -> str:
        """``"user"``, ``"agent"`` or ``"role"``."""
        ...

    @property
    def id(self) -> str:
        """Stable identifier."""
        ...

    @property
    def name(self) -> str:
        """Display name."""
        ...


class StorageEngine:
    """Versioned object storage: repositories, sessions, commits, listings and blobs."""

    def __init__(self, data_dir: Path, blobs: BlobStore) -> None:
        self.data_dir = data_dir
        self.blobs = blobs

    @classmethod
    def open(cls, data_dir: Path) -> StorageEngine:
        """Open (creating when needed) the engine stored in ``data_dir``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release database connections."""
        raise NotImplementedError

    # Repositories
    def init_repository(self, repo_id: str) -> None:
        """Create an empty repository."""
        raise NotImplementedError

    def drop_repository(self, repo_id: str) -> None:
        """Forget a repository."""
        raise NotImplementedError

    # Commits
    def head(self, repo_id: str) -> CommitInfo | None:
        """Return the latest commit."""
        raise NotImplementedError

    def get_commit(self, repo_id: str, commit_id: str) -> CommitInfo:
        """Return a commit by id."""
        raise NotImplementedError

    def resolve_ref(self, repo_id: str, ref: str | None) -> CommitInfo | None:
        """Resolve a ref to a commit."""
        raise NotImplementedError

    def log(
        self, repo_id: str, *, ref: str | None = None, after: str | None = None, limit: int = 100
    ) -> Page[CommitInfo]:
        """Return history, newest first."""
        raise NotImplementedError

    # Sessions
    def create_session(self, repo_id: str, actor: ActorLike) -> SessionInfo:
        """Open a session."""
        raise NotImplementedError

    def get_session(self, repo_id: str, session_id: str) -> SessionInfo:
        """Return a session in any state."""
        raise NotImplementedError

    def rollback_session(self, repo_id: str, session_id: str) -> None:
        """Discard a session."""
        raise NotImplementedError

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
        """Commit a session."""
        raise NotImplementedError

    def has_changes(self, repo_id: str, session_id: str) -> bool:
        """Whether the session staged anything."""
        raise NotImplementedError

    def approve_session(
        self,
        repo_id: str,
        session_id: str,
        *,
        actor: ActorLike,
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> CommitInfo:
        """Approve a pending session."""
        raise NotImplementedError

    # Reads
    def stat(
        self, repo_id: str, path: str, *, session_id: str | None = None, ref: str | None = None
    ) -> ObjectVersion:
        """Return one object version."""
        raise NotImplementedError

    def blob_path(self, blob: BlobRef) -> Path:
        """Return the file holding a blob."""
        raise NotImplementedError

    def list_objects(
        self,
        repo_id: str,
        *,
        session_id: str | None = None,
        ref: str | None = None,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        limit: int = 100,
    ) -> Page[ListingItem]:
        """List objects."""
        raise NotImplementedError

    def list_changes(
        self, repo_id: str, session_id: str, *, prefix: str = "", after: str = "", limit: int = 100
    ) -> Page[ChangeItem]:
        """List staged changes."""
        raise NotImplementedError

    def diff(
        self,
        repo_id: str,
        *,
        left: str | None,
        right: str,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        limit: int = 100,
    ) -> Page[ListingItem]:
        """List differences between two commits."""
        raise NotImplementedError

    def session_view(self, repo_id: str, session_id: str, prefix: str = "") -> Iterator[ViewEntry]:
        """Iterate every object visible in a session."""
        raise NotImplementedError

    # Writes
    def stage_blob(
        self,
        repo_id: str,
        session_id: str,
        path: str,
        blob: BlobRef,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectVersion:
        """Stage a write."""
        raise NotImplementedError

    def stage_delete(self, repo_id: str, session_id: str, path: str) -> bool:
        """Stage a deletion."""
        raise NotImplementedError

    def stage_copy(self, repo_id: str, session_id: str, source: str, destination: str) -> ObjectVersion:
        """Stage a copy."""
        raise NotImplementedError

    def delete_many(self, repo_id: str, session_id: str, paths: Iterable[str]) -> int:
        """Stage several deletions."""
        raise NotImplementedError

    def ingest_file(self, path: Path) -> BlobRef:
        """Move a finished file into the blob store."""
        raise NotImplementedError

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
        """Undo a commit with a new one."""
        raise NotImplementedError

    # Multipart
    def create_upload(self, repo_id: str, session_id: str, path: str) -> str:
        """Start a multipart upload."""
        raise NotImplementedError

    def put_part(self, upload_id: str, part_number: int, writer_commit: BlobRef) -> str:
        """Record a part."""
        raise NotImplementedError

    def complete_upload(
        self,
        repo_id: str,
        session_id: str,
        path: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        content_type: str,
        size_bytes: int | None = None,
    ) -> ObjectVersion:
        """Finish a multipart upload."""
        raise NotImplementedError

    def abort_upload(self, upload_id: str) -> None:
        """Abandon a multipart upload."""
        raise NotImplementedError
