"""The ``MetadataStore`` interface: versioning metadata behind transactions.

The engine keeps all versioning logic (visibility, conflicts, tree hashes, paging) and talks to the store only
through the records and transaction methods below, so another database can replace SQLite without touching it.
Sequence numbers order a repository's commits: 0 is the empty repository, the first commit is 1. A version
row is visible at sequence ``n`` when ``born_seq <= n < died_seq``; live rows have ``died_seq == LIVE_SEQ``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from tilde.server.storage.types import Actor, CommitInfo

__all__ = [
    "LIVE_SEQ",
    "KeyRange",
    "MetadataStore",
    "MetadataTx",
    "PartRecord",
    "RepoRecord",
    "SessionRecord",
    "UploadRecord",
    "VersionRecord",
]

LIVE_SEQ = 1 << 62


@dataclass(frozen=True)
class KeyRange:
    """Paths from ``start`` (inclusive or not) up to ``end`` (exclusive; None = unbounded).

    Attributes:
        start: Lower bound.
        inclusive: Whether ``start`` itself is included.
        end: Exclusive upper bound, or None.

    """

    start: str = ""
    inclusive: bool = True
    end: str | None = None


@dataclass(frozen=True)
class RepoRecord:
    """A repository's head.

    Attributes:
        repo_id: The repository.
        head_seq: Sequence of the latest commit (0 = no commit yet).
        head_commit_id: Id of the latest commit.

    """

    repo_id: str
    head_seq: int
    head_commit_id: str | None


@dataclass(frozen=True)
class VersionRecord:
    """An object version, committed or staged (a staged deletion has ``deleted`` set and no blob).

    Attributes:
        path: Object path.
        blob_key: Blob store key.
        size: Size in bytes.
        sha256: Hex digest of the bytes.
        content_type: MIME type.
        metadata: User metadata.
        modified_us: Staging time, microseconds since the epoch.
        deleted: True for a staged deletion (tombstone).
        source_metadata: Where an imported version came from (empty for anything else).

    """

    path: str
    blob_key: str
    size: int
    sha256: str
    content_type: str
    metadata: Mapping[str, str]
    modified_us: int
    deleted: bool = False
    source_metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionRecord:
    """A session as stored.

    Attributes:
        id: Session id.
        repo_id: Repository.
        base_seq: Head sequence when the session started.
        base_commit_id: Head commit when the session started.
        state: ``open``, ``pending_approval``, ``committed`` or ``rolled_back``.
        created_by: Who opened it.
        created_us: Creation time, microseconds since the epoch.
        commit_id: Resulting commit.
        pending_message: Commit message while pending approval.
        pending_metadata: Commit metadata while pending approval.
        pending_actor: Who asked for the commit while pending approval.

    """

    id: str
    repo_id: str
    base_seq: int
    base_commit_id: str | None
    state: str
    created_by: Actor
    created_us: int
    commit_id: str | None = None
    pending_message: str | None = None
    pending_metadata: Mapping[str, str] = field(default_factory=dict)
    pending_actor: Actor | None = None


@dataclass(frozen=True)
class UploadRecord:
    """A multipart upload in progress.

    Attributes:
        id: Upload id.
        repo_id: Repository.
        session_id: Session the result is staged into.
        path: Destination path.
        created_us: Creation time, microseconds since the epoch.
        part_size: Size of every part but the last when the parts are written in place into one file (see
            ``StorageEngine.create_upload``); None when each part is its own blob.

    """

    id: str
    repo_id: str
    session_id: str
    path: str
    created_us: int
    part_size: int | None = None


@dataclass(frozen=True)
class PartRecord:
    """One uploaded part.

    Attributes:
        number: Part number (1-based).
        blob_key: Blob holding the part; empty for a part written in place into its upload's file.
        size: Size in bytes.
        sha256: Hex digest.

    """

    number: int
    blob_key: str
    size: int
    sha256: str


class MetadataTx(Protocol):
    """Operations inside one transaction: a consistent snapshot; writes only in write transactions."""

    # Repositories and commits
    def get_repo(self, repo_id: str) -> RepoRecord | None:
        """Return a repository's head record."""
        ...

    def lock_repo(self, repo_id: str) -> RepoRecord | None:
        """Return a repository's head record, locked against other writers until the transaction ends.

        Commits call it before reading anything else, so concurrent commits to one repository take turns and
        each sees the head the previous one left (a store whose writers are serialised needs no lock).
        """
        ...

    def create_repo(self, repo_id: str, created_us: int) -> None:
        """Create an empty repository (no-op when it exists)."""
        ...

    def delete_repo(self, repo_id: str) -> None:
        """Delete a repository with its commits, versions, sessions and uploads."""
        ...

    def set_head(self, repo_id: str, seq: int, commit_id: str) -> None:
        """Move a repository's head."""
        ...

    def insert_commit(self, commit: CommitInfo) -> None:
        """Record a commit."""
        ...

    def get_commit(self, repo_id: str, commit_id: str) -> CommitInfo | None:
        """Return a commit by id."""
        ...

    def get_commit_at(self, repo_id: str, seq: int) -> CommitInfo | None:
        """Return the commit with a sequence number."""
        ...

    def commits_with_prefix(self, repo_id: str, prefix: str, limit: int) -> list[CommitInfo]:
        """Return commits whose id starts with ``prefix``."""
        ...

    def commits_before(self, repo_id: str, max_seq: int, limit: int) -> list[CommitInfo]:
        """Return commits with ``seq <= max_seq``, newest first."""
        ...

    # Committed versions
    def version_at(self, repo_id: str, path: str, seq: int) -> VersionRecord | None:
        """Return the version of ``path`` visible at ``seq``."""
        ...

    def versions_at(self, repo_id: str, seq: int, keys: KeyRange, limit: int) -> list[VersionRecord]:
        """Return versions visible at ``seq`` within ``keys``, in path order."""
        ...

    def changed_paths(
        self, repo_id: str, low_seq: int, high_seq: int, keys: KeyRange, limit: int
    ) -> list[str]:
        """Return distinct paths with a version born or closed in ``(low_seq, high_seq]``, in path order."""
        ...

    def apply_changes(
        self, repo_id: str, seq: int, changes: Iterable[tuple[str, VersionRecord | None]]
    ) -> tuple[list[VersionRecord], list[VersionRecord]]:
        """Close the live version of each path and insert the new ones (None = deletion) born at ``seq``.

        Returns:
            The closed versions and the inserted versions.

        """
        ...

    # Sessions and staged changes
    def insert_session(self, session: SessionRecord) -> None:
        """Record a new session."""
        ...

    def get_session(self, session_id: str) -> SessionRecord | None:
        """Return a session."""
        ...

    def update_session(self, session: SessionRecord) -> None:
        """Store a session's new state."""
        ...

    def get_staged(self, session_id: str, path: str) -> VersionRecord | None:
        """Return the staged row of a path."""
        ...

    def put_staged(self, session_id: str, rows: Iterable[VersionRecord]) -> None:
        """Insert or replace staged rows."""
        ...

    def remove_staged(self, session_id: str, path: str) -> None:
        """Forget a staged row."""
        ...

    def staged_rows(self, session_id: str, keys: KeyRange, limit: int) -> list[VersionRecord]:
        """Return staged rows within ``keys`` in path order."""
        ...

    def has_staged(self, session_id: str) -> bool:
        """Whether a session staged anything."""
        ...

    def clear_staged(self, session_id: str) -> None:
        """Forget all staged rows of a session."""
        ...

    def conflicting_paths(self, repo_id: str, session_id: str, base_seq: int, limit: int) -> list[str]:
        """Return staged paths that a commit after ``base_seq`` changed."""
        ...

    # Multipart uploads
    def insert_upload(self, upload: UploadRecord) -> None:
        """Record a new upload."""
        ...

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        """Return an upload."""
        ...

    def put_part(self, upload_id: str, part: PartRecord) -> None:
        """Insert or replace a part."""
        ...

    def get_parts(self, upload_id: str) -> dict[int, PartRecord]:
        """Return an upload's parts by number."""
        ...

    def delete_upload(self, upload_id: str) -> None:
        """Forget an upload and its parts."""
        ...

    def delete_session_uploads(self, session_id: str) -> None:
        """Forget every upload of a session."""
        ...

    def list_uploads(
        self, *, session_id: str | None = None, repo_id: str | None = None
    ) -> list[UploadRecord]:
        """Return the uploads of a session, of a repository, or (neither given) all of them."""
        ...

    def referenced_blob_keys(self) -> set[str]:
        """Return every blob key a version, staged row or upload part refers to."""
        ...


class MetadataStore(Protocol):
    """A transactional metadata database, safe to use from many threads."""

    def read(self) -> AbstractContextManager[MetadataTx]:
        """Open a read transaction (a consistent snapshot)."""
        ...

    def point_read(self) -> AbstractContextManager[MetadataTx]:
        """Like `read`, for a block that runs exactly one query (one statement is a snapshot of its own).

        A store may skip opening and ending a transaction around it (SQLite does: two statements fewer on
        the event loop for a point look-up such as the head a read sees).
        """
        ...

    def write(self) -> AbstractContextManager[MetadataTx]:
        """Open a write transaction; an exception rolls everything back.

        Writers to one repository are serialised (by the store, or by `MetadataTx.lock_repo` and the session
        row lock of `MetadataTx.get_session`).
        """
        ...

    def close(self) -> None:
        """Release every connection."""
        ...
