"""Versioned objects, sessions and commits for the Tilde SDK.

Start from `Client.repository`::

    from tilde.data import Client

    repo = Client().repository("acme/data")
    with repo.session() as session:
        session.objects.put("hello.txt", b"hi")
        session.commit("say hi")
"""

from tilde.data._version import __version__
from tilde.data.client import Client
from tilde.data.commits import Commit, Commits
from tilde.data.models import (
    CommitResult,
    CopyObjectResult,
    Entry,
    EntryRecord,
    ListingEntry,
    MultipartUpload,
    ObjectMetadata,
    PutObjectResult,
    SourceMetadata,
)
from tilde.data.object_reader import ObjectReader
from tilde.data.objects import ReadOnlyObjects, SessionObjects
from tilde.data.repositories import Repositories, Repository
from tilde.data.sessions import Session
from tilde.data.transfers import FolderTransferResult, TransferProgress
from tilde.data.upload_strategies import UploadRequest, UploadSettings, UploadStrategy

__all__ = [
    "Client",
    "Commit",
    "CommitResult",
    "Commits",
    "CopyObjectResult",
    "Entry",
    "EntryRecord",
    "FolderTransferResult",
    "ListingEntry",
    "MultipartUpload",
    "ObjectMetadata",
    "ObjectReader",
    "PutObjectResult",
    "ReadOnlyObjects",
    "Repositories",
    "Repository",
    "Session",
    "SessionObjects",
    "SourceMetadata",
    "TransferProgress",
    "UploadRequest",
    "UploadSettings",
    "UploadStrategy",
    "__version__",
]
