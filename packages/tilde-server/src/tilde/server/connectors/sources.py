"""Where an import reads from: an S3 bucket (boto3), a server directory, or another repository.

Each source lists `SourceObject` values in a stable order and copies one object's bytes into a blob writer in
chunks, so no object is ever held whole in memory. A repository source copies nothing: its objects already
live in the engine's blob store, so the import stages the same blobs again (metadata only).

Failures the user can act on (refused credentials, a missing bucket, an unreachable endpoint, a file that
vanished) raise `ImportFailed` with a message that names the problem and never contains a credential.
"""

from __future__ import annotations

import mimetypes
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tilde.server.connectors.spec import local_directory, parse_s3_uri
from tilde.server.storage import BlobRef, BlobWriter, StorageEngine

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["ImportFailed", "ImportSource", "LocalSource", "RepositorySource", "S3Source", "SourceObject"]

#: Bytes read from a source per chunk (bounded memory per object, whatever its size).
CHUNK_SIZE = 1024 * 1024
_DEFAULT_CONTENT_TYPE = "application/octet-stream"


class ImportFailed(Exception):
    """An import cannot go on; ``message`` says why in words a user can act on (and holds no secret)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SourceObject:
    """One object a source offers.

    Attributes:
        key: The source's own name for it (S3 key, path inside the directory, path in the repository).
        relative: Its name relative to the import's base prefix (appended to the destination path).
        size: Size in bytes as listed.
        etag: The source's entity tag ("" when it has none).
        version_id: The source version (S3 version id, source commit id; "" when none).
        content_type: MIME type when the listing knows it.
        metadata: User metadata to keep (repository sources).
        blob: The bytes when they already are in the engine's blob store (repository sources).

    """

    key: str
    relative: str
    size: int
    etag: str = ""
    version_id: str = ""
    content_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    blob: BlobRef | None = None


@dataclass(frozen=True)
class CopiedObject:
    """What `ImportSource.copy_into` learnt while copying: the content type, the version and the etag."""

    content_type: str
    version_id: str
    etag: str


class ImportSource(Protocol):
    """A place an import reads objects from."""

    #: ``s3``, ``local`` or ``repository`` (the ``connector_type`` of the imported entries).
    kind: str

    def objects(self) -> Iterator[SourceObject]:
        """Iterate the objects to import."""
        ...

    def copy_into(self, obj: SourceObject, writer: BlobWriter, stop: threading.Event) -> CopiedObject:
        """Stream one object's bytes into ``writer``; give up (`ImportFailed`) when ``stop`` is set."""
        ...


def _stopped() -> ImportFailed:
    return ImportFailed("the server stopped during the import")


def _client_error(error: ClientError, what: str) -> ImportFailed:
    info = error.response.get("Error", {})
    code = str(info.get("Code", "")) or "unknown"
    message = str(info.get("Message", "")).strip()
    if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403", "InvalidToken"):
        return ImportFailed(f"the S3 server refused the connector's credentials for {what} ({code})")
    if code in ("NoSuchBucket", "404") and "bucket" in what:
        return ImportFailed(f"{what} does not exist ({code})")
    return ImportFailed(f"S3 error on {what}: {code}{': ' + message if message else ''}")


class S3Source:
    """Objects under a key prefix of an S3 bucket, read through boto3.

    boto3 is the S3 client because it is maintained by the service's vendor, streams response bodies in
    chunks, paginates listings, talks to any S3-compatible endpoint (``endpoint_url``) and is typed through
    boto3-stubs; obstore was considered for raw throughput but an import is bound by staging, not by reads.

    Args:
        source_uri: The connector's ``s3://bucket/prefix``.
        config: The connector's credentials (``access_key_id``, ``secret_access_key``, ``region``, optional
            ``endpoint_url`` and ``session_token``).
        base: The key prefix to import (inside the connector's prefix).

    """

    kind = "s3"

    def __init__(self, source_uri: str, config: dict[str, str], base: str) -> None:
        self.bucket = parse_s3_uri(source_uri).bucket
        self.base = base
        endpoint = config.get("endpoint_url")
        # Credentials are always passed explicitly: the server's own environment must never leak into a
        # connector's requests. Path-style addressing suits S3-compatible endpoints on plain host names.
        self._client: S3Client = boto3.session.Session().client(
            "s3",
            aws_access_key_id=config["access_key_id"],
            aws_secret_access_key=config["secret_access_key"],
            aws_session_token=config.get("session_token") or None,
            region_name=config["region"],
            endpoint_url=endpoint or None,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if endpoint else "auto"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )

    def objects(self) -> Iterator[SourceObject]:
        """List every object under the base prefix (paginated; directory markers skipped)."""
        where = f"bucket {self.bucket!r}"
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.base
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item.get("Key", "")
                    if not key or key.endswith("/"):
                        continue  # "folder" markers hold no data
                    yield SourceObject(
                        key=key,
                        relative=key[len(self.base) :],
                        size=int(item.get("Size", 0)),
                        etag=str(item.get("ETag", "")).strip('"'),
                    )
        except ClientError as error:
            raise _client_error(error, where) from None
        except BotoCoreError as error:
            raise ImportFailed(f"cannot list {where}: {type(error).__name__}") from None

    def copy_into(self, obj: SourceObject, writer: BlobWriter, stop: threading.Event) -> CopiedObject:
        """Stream ``obj`` from S3 into ``writer`` chunk by chunk."""
        what = f"s3://{self.bucket}/{obj.key}"
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=obj.key)
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(CHUNK_SIZE):
                    if stop.is_set():
                        raise _stopped()
                    writer.write(chunk)
            finally:
                body.close()
        except ClientError as error:
            raise _client_error(error, what) from None
        except BotoCoreError as error:
            raise ImportFailed(f"cannot read {what}: {type(error).__name__}") from None
        return CopiedObject(
            content_type=response.get("ContentType") or _DEFAULT_CONTENT_TYPE,
            version_id=response.get("VersionId") or "",
            etag=str(response.get("ETag", obj.etag)).strip('"'),
        )


def _open_beneath(root: Path, relative: str, flags: int) -> int:
    """Open ``root/relative`` one component at a time, refusing every symbolic link on the way."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        parts = relative.split("/")
        for part in parts[:-1]:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


class LocalSource:
    """Regular files under a directory on the server (symbolic links are never followed, only skipped).

    Args:
        directory: The connector's directory (checked again against the allowed roots).
        base: The path prefix to import, relative to the directory.

    """

    kind = "local"

    def __init__(self, directory: str, base: str) -> None:
        self.root = local_directory(directory)
        self.base = base

    def objects(self) -> Iterator[SourceObject]:
        """Walk the directory in name order, yielding regular files under the base prefix."""
        start_dir = self.base.rpartition("/")[0]
        try:
            top = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise ImportFailed(f"cannot read the connector's directory: {error.strerror}") from None
        os.close(top)
        if start_dir:
            try:
                os.close(_open_beneath(self.root, start_dir, os.O_RDONLY | os.O_DIRECTORY))
            except OSError:
                return  # nothing (or only a link) at that prefix: no objects
        yield from self._walk(start_dir)

    def _walk(self, start_dir: str) -> Iterator[SourceObject]:
        top = str(self.root / start_dir) if start_dir else str(self.root)
        for dirpath, dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=False):
            dirnames.sort()
            relative_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                try:
                    info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                except OSError:
                    continue  # vanished while walking
                if not stat.S_ISREG(info.st_mode):
                    continue  # links, sockets, devices: never imported
                key = name if relative_dir == "." else f"{relative_dir}/{name}"
                if key.startswith(self.base):
                    yield SourceObject(key=key, relative=key[len(self.base) :], size=info.st_size)

    def copy_into(self, obj: SourceObject, writer: BlobWriter, stop: threading.Event) -> CopiedObject:
        """Copy one file into ``writer`` chunk by chunk."""
        try:
            fd = _open_beneath(self.root, obj.key, os.O_RDONLY)
        except OSError as error:
            raise ImportFailed(
                f"cannot read {obj.key!r} from the connector's directory: {error.strerror}"
            ) from None
        with os.fdopen(fd, "rb", buffering=0) as file:
            while chunk := file.read(CHUNK_SIZE):
                if stop.is_set():
                    raise _stopped()
                writer.write(chunk)
        content_type = mimetypes.guess_type(obj.key)[0] or _DEFAULT_CONTENT_TYPE
        return CopiedObject(content_type=content_type, version_id="", etag="")


class RepositorySource:
    """Objects under a prefix of another repository at its latest commit; their blobs are reused as they are.

    Args:
        engine: The storage engine holding both repositories.
        repo_id: The source repository.
        base: The path prefix to import.

    """

    kind = "repository"
    _PAGE = 1000

    def __init__(self, engine: StorageEngine, repo_id: str, base: str) -> None:
        self.engine = engine
        self.repo_id = repo_id
        self.base = base

    def objects(self) -> Iterator[SourceObject]:
        """List the source's head under the base prefix, page by page, all at the same commit."""
        head = self.engine.head(self.repo_id)
        if head is None:
            return
        after = ""
        while True:
            page = self.engine.list_objects(
                self.repo_id, ref=head.id, prefix=self.base, after=after, limit=self._PAGE
            )
            for item in page.items:
                version = item.version
                if version is None:
                    continue
                yield SourceObject(
                    key=item.path,
                    relative=item.path[len(self.base) :],
                    size=version.size,
                    etag=version.etag.strip('"'),
                    version_id=head.id,
                    content_type=version.content_type,
                    metadata=dict(version.metadata),
                    blob=version.blob,
                )
            if not page.has_more or not page.next_cursor:
                return
            after = page.next_cursor

    def copy_into(self, obj: SourceObject, writer: BlobWriter, stop: threading.Event) -> CopiedObject:
        """Never needed: repository objects carry their blob (see `SourceObject.blob`)."""
        raise ImportFailed(f"object {obj.key!r} of the source repository has no stored bytes")
