"""Value types exchanged between the storage engine and its callers (all immutable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Generic, Literal, TypeVar

__all__ = [
    "Actor",
    "BlobRef",
    "ChangeItem",
    "CommitInfo",
    "CommitOutcome",
    "ListingItem",
    "NewObject",
    "ObjectVersion",
    "Page",
    "SessionInfo",
    "ViewEntry",
]

T = TypeVar("T")

SessionState = Literal["open", "pending_approval", "committed", "rolled_back"]
CommitStatus = Literal["committed", "approval_required", "no_changes"]


@dataclass(frozen=True)
class Actor:
    """Who performs an action.

    Attributes:
        type: ``"user"``, ``"agent"`` or ``"role"``.
        id: Stable identifier of the actor.
        name: Display name.

    """

    type: str
    id: str
    name: str


@dataclass(frozen=True)
class BlobRef:
    """A reference to immutable stored bytes.

    Attributes:
        key: Identifies the bytes inside the blob store.
        size: Length in bytes.
        sha256: Hex SHA-256 digest of the bytes.

    """

    key: str
    size: int
    sha256: str

    @property
    def etag(self) -> str:
        """The quoted hex digest, as sent in ``ETag`` headers."""
        return '"' + self.sha256 + '"'


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object.

    Attributes:
        path: Object path inside the repository.
        blob: The stored bytes.
        size: Length in bytes.
        etag: Quoted content digest.
        content_type: MIME type given at upload.
        metadata: User metadata.
        last_modified: When this version was staged (UTC).
        source_metadata: Where an imported version came from (connector, source path, etag, import job);
            empty for objects written any other way.

    """

    path: str
    blob: BlobRef
    size: int
    etag: str
    content_type: str
    metadata: dict[str, str]
    last_modified: datetime
    source_metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NewObject:
    """An object to stage whose bytes are already in the blob store (see ``StorageEngine.stage_objects``).

    Attributes:
        path: Object path inside the repository.
        blob: The stored bytes.
        content_type: MIME type (empty means ``application/octet-stream``).
        metadata: User metadata.
        source_metadata: Where the object came from (imports: connector, source path, etag, job).

    """

    path: str
    blob: BlobRef
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    source_metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListingItem:
    """One row of a listing or diff.

    Attributes:
        path: Object path, or the common prefix (ending with the delimiter) for ``type == "prefix"``.
        type: ``"object"`` or ``"prefix"``.
        version: The object version (the old one for ``status == "removed"``); None for prefixes.
        status: Only in diffs: ``"added"``, ``"modified"`` or ``"removed"``.

    """

    path: str
    type: Literal["object", "prefix"]
    version: ObjectVersion | None = None
    status: str | None = None


@dataclass(frozen=True)
class ChangeItem:
    """A staged change in a session.

    Attributes:
        path: Object path.
        version: The staged version, or None for a staged deletion.

    """

    path: str
    version: ObjectVersion | None


@dataclass(frozen=True)
class CommitInfo:
    """A commit of a repository's linear history.

    Attributes:
        id: Commit identifier (64 hex characters).
        repo_id: Repository the commit belongs to.
        seq: Position in the history, 1 for the first commit.
        parent_id: The previous commit, None for the first one.
        message: Commit message.
        committer: Who committed.
        metadata: User metadata.
        created_at: Commit time (UTC).
        tree_id: Content address of the committed tree (equal trees have equal ids).
        object_count: Number of objects in the tree.
        total_size: Sum of object sizes in the tree.

    """

    id: str
    repo_id: str
    seq: int
    parent_id: str | None
    message: str
    committer: Actor
    metadata: dict[str, str]
    created_at: datetime
    tree_id: str
    object_count: int
    total_size: int


@dataclass(frozen=True)
class SessionInfo:
    """A write session.

    Attributes:
        id: Session identifier (a uuid4 string).
        repo_id: Repository of the session.
        base_commit_id: Head when the session started (None for an empty repository).
        state: ``"open"``, ``"pending_approval"``, ``"committed"`` or ``"rolled_back"``.
        created_by: Who opened the session.
        created_at: When it was opened (UTC).
        commit_id: The resulting commit once committed.
        pending_message: The commit message while waiting for approval.

    """

    id: str
    repo_id: str
    base_commit_id: str | None
    state: SessionState
    created_by: Actor
    created_at: datetime
    commit_id: str | None = None
    pending_message: str | None = None


@dataclass(frozen=True)
class CommitOutcome:
    """Result of committing a session.

    Attributes:
        status: ``"committed"``, ``"approval_required"`` or ``"no_changes"``.
        commit: The new commit; the current head for ``"no_changes"``; None while approval is pending.

    """

    status: CommitStatus
    commit: CommitInfo | None


@dataclass(frozen=True)
class ViewEntry:
    """An object visible in a session, with the local file holding its bytes.

    Attributes:
        path: Object path.
        blob_path: Immutable file with the object's bytes (never modify it; hard-link or read it).
        size: Length in bytes.
        etag: Quoted content digest.
        content_type: MIME type.

    """

    path: str
    blob_path: Path
    size: int
    etag: str
    content_type: str


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing.

    Attributes:
        items: The page's items.
        has_more: Whether more items follow.
        next_cursor: Pass as ``after`` to get the next page (None when there is none).

    """

    items: list[T] = field(default_factory=list)
    has_more: bool = False
    next_cursor: str | None = None
