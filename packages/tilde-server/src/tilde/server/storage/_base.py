"""State and helpers shared by the engine's parts (reads, writes, history)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Protocol

from tilde.server.storage._inplace import PartClaims
from tilde.server.storage._time import from_micros
from tilde.server.storage.blobs import BlobStore, UploadFileStore
from tilde.server.storage.errors import InvalidArgument, NotFound, SessionClosed
from tilde.server.storage.metadata import (
    MetadataStore,
    MetadataTx,
    RepoRecord,
    SessionRecord,
    UploadRecord,
    VersionRecord,
)
from tilde.server.storage.types import Actor, BlobRef, ObjectVersion, SessionInfo, SessionState

__all__ = ["ActorLike", "EngineBase", "to_actor", "to_object", "to_session_info"]

# Sessions whose staged rows may still be read.
READABLE_STATES = frozenset({"open", "pending_approval"})


class ActorLike(Protocol):
    """Anything naming an actor: ``Actor`` or the HTTP layer's principal."""

    @property
    def type(self) -> object:
        """``"user"``, ``"agent"`` or ``"role"`` (a string or a string-valued enum)."""
        ...

    @property
    def id(self) -> str:
        """Stable identifier."""
        ...

    @property
    def name(self) -> str:
        """Display name."""
        ...


def to_actor(actor: ActorLike) -> Actor:
    """Copy any actor-like value into an ``Actor``."""
    if isinstance(actor, Actor):
        return actor
    kind = actor.type
    if isinstance(kind, Enum):
        kind = kind.value
    return Actor(type=str(kind), id=str(actor.id), name=str(actor.name))


def to_object(record: VersionRecord) -> ObjectVersion:
    """Turn a stored version into the public value."""
    blob = BlobRef(key=record.blob_key, size=record.size, sha256=record.sha256)
    return ObjectVersion(
        path=record.path,
        blob=blob,
        size=record.size,
        etag=blob.etag,
        content_type=record.content_type,
        metadata=dict(record.metadata),
        last_modified=from_micros(record.modified_us),
        source_metadata=dict(record.source_metadata),
    )


def to_session_info(session: SessionRecord) -> SessionInfo:
    """Turn a stored session into the public value."""
    state: SessionState = session.state  # type: ignore[assignment]
    return SessionInfo(
        id=session.id,
        repo_id=session.repo_id,
        base_commit_id=session.base_commit_id,
        state=state,
        created_by=session.created_by,
        created_at=from_micros(session.created_us),
        commit_id=session.commit_id,
        pending_message=session.pending_message,
    )


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Validate user metadata (string keys and values).

    Raises:
        InvalidArgument: When a key or value is not a string.

    """
    if not metadata:
        return {}
    result: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument("metadata keys and values must be strings")
        result[key] = value
    return result


class EngineBase:
    """The two stores plus lookups that raise the engine's errors."""

    def __init__(self, meta: MetadataStore, blobs: BlobStore) -> None:
        self.meta = meta
        self.blobs = blobs
        self._part_claims = PartClaims()

    def _upload_files(self) -> UploadFileStore | None:
        """Return the blob store as an ``UploadFileStore``; None when it cannot assemble uploads in place."""
        return self.blobs if isinstance(self.blobs, UploadFileStore) else None

    def _discard_upload_files(self, uploads: Iterable[UploadRecord]) -> None:
        """Delete the files of forgotten in-place uploads (call once their records are gone)."""
        files = self._upload_files()
        if files is None:
            return
        for upload in uploads:
            if upload.part_size is not None:
                files.discard_upload_file(upload.id)

    @staticmethod
    def _repo(tx: MetadataTx, repo_id: str) -> RepoRecord:
        repo = tx.get_repo(repo_id)
        if repo is None:
            raise NotFound(f"repository '{repo_id}'")
        return repo

    @staticmethod
    def _locked_repo(tx: MetadataTx, repo_id: str) -> RepoRecord:
        """Return the repository's head, locked until the write transaction ends (commits start with it)."""
        repo = tx.lock_repo(repo_id)
        if repo is None:
            raise NotFound(f"repository '{repo_id}'")
        return repo

    @staticmethod
    def _session(tx: MetadataTx, repo_id: str, session_id: str) -> SessionRecord:
        session = tx.get_session(session_id)
        if session is None or session.repo_id != repo_id:
            raise NotFound(f"session '{session_id}'")
        return session

    @classmethod
    def _open_session(cls, tx: MetadataTx, repo_id: str, session_id: str) -> SessionRecord:
        session = cls._session(tx, repo_id, session_id)
        if session.state != "open":
            raise SessionClosed(f"session '{session_id}' is {session.state.replace('_', ' ')}")
        return session

    @classmethod
    def _readable_session(cls, tx: MetadataTx, repo_id: str, session_id: str) -> SessionRecord:
        session = cls._session(tx, repo_id, session_id)
        if session.state not in READABLE_STATES:
            raise SessionClosed(f"session '{session_id}' is {session.state.replace('_', ' ')}")
        return session

    @staticmethod
    def _visible(tx: MetadataTx, session: SessionRecord, path: str) -> VersionRecord | None:
        """Return what a session sees at ``path``: its staged row, else the base commit's version."""
        staged = tx.get_staged(session.id, path)
        if staged is not None:
            return None if staged.deleted else staged
        if session.base_seq == 0:
            return None
        return tx.version_at(session.repo_id, path, session.base_seq)
