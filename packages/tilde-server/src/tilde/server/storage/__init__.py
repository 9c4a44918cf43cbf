"""The storage engine: versioned repositories of objects, sessions, commits and content-addressed blobs."""

from tilde.server.storage._inplace import InPlacePartWriter
from tilde.server.storage.blobs import (
    BlobStore,
    BlobWriter,
    LocalBlobStore,
    LocalBlobWriter,
    UploadFile,
    UploadFileStore,
)
from tilde.server.storage.engine import ActorLike, StorageEngine
from tilde.server.storage.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    RangeNotSatisfiable,
    SessionClosed,
    StorageError,
)
from tilde.server.storage.metadata import MetadataStore, MetadataTx
from tilde.server.storage.paths import validate_path
from tilde.server.storage.sqlite import SQLiteMetadataStore
from tilde.server.storage.types import (
    Actor,
    BlobRef,
    ChangeItem,
    CommitInfo,
    CommitOutcome,
    ListingItem,
    NewObject,
    ObjectVersion,
    Page,
    SessionInfo,
    ViewEntry,
)

__all__ = [
    "Actor",
    "ActorLike",
    "BlobRef",
    "BlobStore",
    "BlobWriter",
    "ChangeItem",
    "CommitInfo",
    "CommitOutcome",
    "Conflict",
    "InPlacePartWriter",
    "InvalidArgument",
    "ListingItem",
    "LocalBlobStore",
    "LocalBlobWriter",
    "MetadataStore",
    "MetadataTx",
    "NewObject",
    "NotFound",
    "ObjectVersion",
    "Page",
    "RangeNotSatisfiable",
    "SQLiteMetadataStore",
    "SessionClosed",
    "SessionInfo",
    "StorageEngine",
    "StorageError",
    "UploadFile",
    "UploadFileStore",
    "ViewEntry",
    "validate_path",
]
