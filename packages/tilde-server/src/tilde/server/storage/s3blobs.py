"""``S3BlobStore``: content-addressed blobs in an S3-compatible object store (boto3).

Blobs live at ``<prefix>blobs/<ab>/<cd>/<sha256>`` in one bucket, exactly like ``LocalBlobStore``'s files;
uploads that clients send straight to the object store land at ``<prefix>uploads/<upload_id>`` first and are
moved to their content address when they are finalized (hashed by the server reading them back, then copied
inside the store). A node-local `BlobCache` holds the blobs this node needs as files (sandbox lower layers,
concatenations); blobs the server writes itself are uploaded from a local temporary file that then becomes
the cached copy.

Nothing here is process-local state another replica would need: the S3 multipart upload behind one of our
uploads is found again by listing the bucket (a per-process map only saves that listing), and a blob's age for
garbage collection is its object's ``LastModified`` (reusing a blob rewrites its metadata to refresh it).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import functools
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ParamSpec, TypeVar
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tilde.server.storage.blobcache import BlobCache, CorruptBlob
from tilde.server.storage.blobs import TempFileBlobWriter
from tilde.server.storage.errors import InvalidArgument, NotFound
from tilde.server.storage.types import BlobRef

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "BlobStoreUnavailable",
    "S3BlobStore",
    "S3BlobWriter",
    "S3Location",
    "copy_local_blobs",
    "open_s3_blob_store",
    "parse_blob_store_url",
]

_CHUNK = 8 * 1024 * 1024
_HEX = frozenset("0123456789abcdef")
_UPLOAD_ID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_")
#: Large transfers run as parallel multipart requests of this size.
_TRANSFER = TransferConfig(
    multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024, max_concurrency=8
)
#: Blobs fetched at once into the node-local cache.
FETCH_WORKERS = 8


class BlobStoreUnavailable(RuntimeError):
    """The object store cannot be reached or failed on its side (the API answers ``503``, retry later)."""


P = ParamSpec("P")
R = TypeVar("R")


def _unavailable_on_failure(func: Callable[P, R]) -> Callable[P, R]:
    """Turn connection failures and the object store's own errors (5xx) into `BlobStoreUnavailable`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except BotoCoreError as error:
            raise BlobStoreUnavailable(
                f"the object store cannot be reached ({type(error).__name__})"
            ) from None
        except ClientError as error:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            code = str(error.response.get("Error", {}).get("Code", ""))
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
                raise BlobStoreUnavailable(f"the object store failed ({code or status})") from None
            raise

    return wrapper


@dataclass(frozen=True)
class S3Location:
    """Where blobs go: a bucket and a key prefix (empty, or ending with ``/``)."""

    bucket: str
    prefix: str


def parse_blob_store_url(url: str) -> S3Location:
    """Parse ``s3://bucket[/prefix]``.

    Raises:
        InvalidArgument: Not an ``s3://`` URL with a bucket.

    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise InvalidArgument(f"a blob store must be s3://bucket[/prefix], not {url!r}")
    prefix = parts.path.strip("/")
    return S3Location(parts.netloc, prefix + "/" if prefix else "")


def _not_found(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


class S3BlobWriter(TempFileBlobWriter):
    """Writes one blob: into a local temporary file (hashing), uploaded on ``commit``; use ``open_writer``."""

    def __init__(self, store: S3BlobStore) -> None:
        self._store = store
        fd, tmp = store.cache.tmp_file()
        super().__init__(fd, tmp)

    @_unavailable_on_failure
    def _finish(self, digest: str) -> BlobRef:
        """Upload the bytes to their content address (unless stored already); they stay cached locally."""
        self._file.close()
        self._store._put_file(self._tmp_path, digest)
        self._store.cache.adopt(digest, self._tmp_path, self._size, pin=False)
        return BlobRef(key=digest, size=self._size, sha256=digest)


class S3BlobStore:
    """Content-addressed blobs in an S3 bucket, with a node-local cache of blob files (thread-safe).

    Args:
        location: Bucket and key prefix.
        cache: The node-local cache of blob files.
        endpoint_url: The object store's URL (None: AWS S3). Presigned URLs point there too unless
            ``public_endpoint_url`` is given, so clients must be able to reach it.
        region: The region (None: from the standard AWS configuration, else ``us-east-1``).
        credentials: ``(access_key_id, secret_access_key)``; None uses the standard AWS credential chain
            (environment variables, shared files, instance roles).
        client: A ready boto3 S3 client (overrides the three settings above).
        public_endpoint_url: The object store's URL as clients reach it, when it differs from ``endpoint_url``
            (an internal name, say): presigned URLs are signed for this one.

    """

    def __init__(
        self,
        location: S3Location,
        cache: BlobCache,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        credentials: tuple[str, str] | None = None,
        client: S3Client | None = None,
        public_endpoint_url: str | None = None,
    ) -> None:
        self.location = location
        self.bucket = location.bucket
        self.cache = cache
        presigner: S3Client | None = None
        if client is None:
            session = boto3.session.Session(
                aws_access_key_id=credentials[0] if credentials else None,
                aws_secret_access_key=credentials[1] if credentials else None,
                region_name=region,
            )
            config = Config(
                signature_version="s3v4",
                max_pool_connections=32,
                retries={"max_attempts": 5, "mode": "standard"},
                s3={"addressing_style": "path"} if endpoint_url else {},
                # Presigned upload URLs must not demand checksum headers clients do not send.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = session.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region or session.region_name or "us-east-1",
                config=config,
            )
            if public_endpoint_url:
                # Signing makes no request: this client only builds the URLs clients are given.
                presigner = session.client(
                    "s3",
                    endpoint_url=public_endpoint_url,
                    region_name=region or session.region_name or "us-east-1",
                    config=config.merge(Config(s3={"addressing_style": "path"})),
                )
        self.client: S3Client = client
        #: The client that signs the URLs handed to clients.
        self.presigner: S3Client = presigner or client
        self._pool = ThreadPoolExecutor(max_workers=FETCH_WORKERS, thread_name_prefix="tilde-blob-fetch")
        self._multipart_ids: dict[str, str] = {}
        self._ids_lock = threading.Lock()

    def close(self) -> None:
        """Stop the fetch workers (the bucket and the cache stay)."""
        self._pool.shutdown(wait=True)

    # Keys

    def blob_key(self, key: str) -> str:
        """Return the object key of a blob.

        Raises:
            InvalidArgument: When the key is not a SHA-256 hex digest.

        """
        if len(key) != 64 or not _HEX.issuperset(key):
            raise InvalidArgument(f"not a blob key: {key!r}")
        return f"{self.location.prefix}blobs/{key[:2]}/{key[2:4]}/{key}"

    def upload_key(self, upload_id: str) -> str:
        """Return the object key where the bytes of a direct upload land before they are finalized.

        Raises:
            InvalidArgument: When the id is not a plain token.

        """
        if not upload_id or len(upload_id) > 128 or not _UPLOAD_ID_CHARS.issuperset(upload_id):
            raise InvalidArgument(f"not an upload id: {upload_id!r}")
        return f"{self.location.prefix}uploads/{upload_id}"

    # BlobStore

    def open_writer(self) -> S3BlobWriter:
        """Start writing a new blob (use it as a context manager so it is aborted unless committed)."""
        return S3BlobWriter(self)

    @_unavailable_on_failure
    def ingest_file(self, path: Path) -> BlobRef:
        """Hash a finished file, upload it and remove it; its bytes stay in the node cache.

        A regular file owned by this process's user with no other link is renamed into the cache (nothing is
        copied); any other file is copied, so nobody who could write to the original can change the blob.

        Raises:
            NotFound: When the file does not exist.
            InvalidArgument: When the path is not a regular file (symbolic links are never followed).

        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise NotFound(f"file '{path}'") from None
        except OSError as error:
            raise InvalidArgument(f"cannot ingest '{path}': {error.strerror}") from None
        with open(fd, "rb", buffering=0) as source:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgument(f"cannot ingest '{path}': not a regular file")
            if info.st_uid == os.geteuid() and info.st_nlink == 1:
                moved = self._move_in(path, source, info)
                if moved is not None:
                    return moved
                source.seek(0)
            ref = self._copy_from(source)
        path.unlink()
        return ref

    def _move_in(self, path: Path, source: BinaryIO, info: os.stat_result) -> BlobRef | None:
        """Hash a file of this process's user and rename it into the cache, uploading it from there.

        Returns:
            The blob, or None when the file is on another filesystem than the cache (copy it instead).

        Raises:
            InvalidArgument: The path was swapped for another file after it was hashed.

        """
        hasher = hashlib.sha256()
        size = 0
        while chunk := source.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
        digest = hasher.hexdigest()
        fd, tmp = self.cache.tmp_file()
        os.close(fd)
        try:
            os.replace(path, tmp)
        except OSError as error:
            tmp.unlink()
            if error.errno == errno.EXDEV:
                return None
            raise
        try:
            now = tmp.stat()
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                raise InvalidArgument(f"'{path}' changed while it was being ingested")
            self._put_file(tmp, digest)
            self.cache.adopt(digest, tmp, size, pin=False)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return BlobRef(key=digest, size=size, sha256=digest)

    def _copy_from(self, source: BinaryIO) -> BlobRef:
        with self.open_writer() as writer:
            while chunk := source.read(_CHUNK):
                writer.write(chunk)
            return writer.commit()

    @_unavailable_on_failure
    def concat(self, parts: Sequence[BlobRef]) -> BlobRef:
        """Store the concatenation of existing blobs (fetched into the cache in parallel) as a new blob.

        Raises:
            NotFound: When a part's bytes are missing.

        """
        paths = self.fetch(parts)
        with self.open_writer() as writer:
            for part in parts:
                with open(paths[part.key], "rb", buffering=0) as source:
                    while chunk := source.read(_CHUNK):
                        writer.write(chunk)
            return writer.commit()

    @_unavailable_on_failure
    def path(self, blob: BlobRef) -> Path:
        """Return a local file holding the blob's bytes, fetched into the node-local cache when missing.

        Raises:
            NotFound: When the bucket does not hold the blob.
            CorruptBlob: When the stored bytes do not hash to the blob's key.

        """
        key = self.blob_key(blob.key)

        def fetch(sink: BinaryIO) -> None:
            try:
                self.client.download_fileobj(self.bucket, key, sink, Config=_TRANSFER)
            except ClientError as error:
                if _not_found(error):
                    raise NotFound(f"blob {blob.key}") from None
                raise

        return self.cache.get(blob.key, blob.size, fetch)

    @_unavailable_on_failure
    def fetch(self, blobs: Iterable[BlobRef]) -> dict[str, Path]:
        """Make many blobs local at once (``FETCH_WORKERS`` in parallel); returns each key's cached file."""
        unique = {blob.key: blob for blob in blobs}
        missing = [blob for key, blob in unique.items() if self.cache.lookup(key) is None]
        paths = {key: self.cache.path_for(key) for key in unique}
        for blob, path in zip(missing, self._pool.map(self.path, missing), strict=True):
            paths[blob.key] = path
        return paths

    @_unavailable_on_failure
    def exists(self, blob: BlobRef) -> bool:
        """Whether the bucket holds the blob."""
        return self._head(self.blob_key(blob.key)) is not None

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as error:
            if _not_found(error):
                return None
            raise

    def _put_file(self, file: Path, digest: str) -> None:
        """Upload a local file to the content address ``digest`` (refresh the stored one when present)."""
        key = self.blob_key(digest)
        if self._head(key) is not None:
            self._touch(key)
            return
        self.client.upload_file(str(file), self.bucket, key, Config=_TRANSFER)

    def _touch(self, key: str) -> None:
        """Refresh an object's ``LastModified`` (garbage collection sees it as just written)."""
        self.client.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": self.bucket, "Key": key},
            MetadataDirective="REPLACE",
            Metadata={"reused": str(int(time.time()))},
        )

    def unreferenced(self, referenced: Set[str], older_than: float) -> Iterator[BlobRef]:
        """Iterate stored blobs outside ``referenced`` whose object was last written before ``older_than``."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.location.prefix}blobs/"):
            for item in page.get("Contents", []):
                key = item["Key"].rsplit("/", 1)[-1]
                if key in referenced or len(key) != 64 or not _HEX.issuperset(key):
                    continue
                if item["LastModified"].timestamp() < older_than:
                    yield BlobRef(key=key, size=item["Size"], sha256=key)

    @_unavailable_on_failure
    def delete(self, blob: BlobRef, older_than: float) -> bool:
        """Delete a blob's object if it is still older than ``older_than``; returns whether it was deleted."""
        key = self.blob_key(blob.key)
        head = self._head(key)
        if head is None or head["LastModified"].timestamp() >= older_than:
            return False
        self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    # Direct uploads: clients PUT to presigned object-store URLs

    def presign_get(self, blob: BlobRef, ttl: float, content_type: str) -> str:
        """Return a presigned GET of a blob (it honours ``Range``) answering with ``content_type``."""
        return self.presigner.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.blob_key(blob.key),
                "ResponseContentType": content_type,
            },
            ExpiresIn=int(ttl),
        )

    def presign_upload(self, upload_id: str, ttl: float, sha256: str | None = None) -> str:
        """Return a presigned PUT of a single upload's bytes to its staging object.

        Args:
            upload_id: The upload.
            ttl: Seconds the URL stays valid.
            sha256: The bytes' SHA-256 (hex), when the client declared it: the URL then requires it as the
                ``x-amz-checksum-sha256`` header and the object store refuses bytes that do not match.

        """
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.upload_key(upload_id)}
        if sha256 is not None:
            params["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
        return self.presigner.generate_presigned_url("put_object", Params=params, ExpiresIn=int(ttl))

    @_unavailable_on_failure
    def start_multipart(self, upload_id: str) -> None:
        """Start the object store's multipart upload behind our upload ``upload_id``."""
        answer = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.upload_key(upload_id))
        with self._ids_lock:
            self._multipart_ids[upload_id] = answer["UploadId"]

    def _multipart_id(self, upload_id: str) -> str:
        """Return the object store's id of our multipart upload (listed when another replica started it).

        Raises:
            NotFound: When the object store has no such upload (completed, aborted, or never started).

        """
        with self._ids_lock:
            known = self._multipart_ids.get(upload_id)
        if known is not None:
            return known
        key = self.upload_key(upload_id)
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            for item in page.get("Uploads", []):
                if item["Key"] == key:
                    with self._ids_lock:
                        self._multipart_ids[upload_id] = item["UploadId"]
                    return item["UploadId"]
        raise NotFound(f"upload '{upload_id}'")

    @_unavailable_on_failure
    def has_multipart(self, upload_id: str) -> bool:
        """Return whether the object store has a multipart upload behind our upload ``upload_id``."""
        try:
            self._multipart_id(upload_id)
        except NotFound:
            return False
        return True

    @_unavailable_on_failure
    def presign_part(self, upload_id: str, part_number: int, ttl: float) -> str:
        """Return a presigned UploadPart URL for one part of a multipart upload."""
        return self.presigner.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": self.upload_key(upload_id),
                "UploadId": self._multipart_id(upload_id),
                "PartNumber": part_number,
            },
            ExpiresIn=int(ttl),
        )

    @_unavailable_on_failure
    def list_multipart_parts(self, upload_id: str) -> list[tuple[int, str, int]]:
        """Return ``(part_number, etag, size)`` of the parts the object store holds, in order."""
        key, s3_id = self.upload_key(upload_id), self._multipart_id(upload_id)
        parts: list[tuple[int, str, int]] = []
        paginator = self.client.get_paginator("list_parts")
        for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=s3_id):
            parts.extend((p["PartNumber"], p["ETag"], p["Size"]) for p in page.get("Parts", []))
        return sorted(parts)

    @_unavailable_on_failure
    def complete_multipart(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> None:
        """Assemble the listed parts (``(number, etag)``) into the upload's staging object.

        Raises:
            InvalidArgument: When the object store refuses the list (unknown part, wrong etag, small part).
            NotFound: Unknown upload.

        """
        key, s3_id = self.upload_key(upload_id), self._multipart_id(upload_id)
        listed: Any = [{"PartNumber": number, "ETag": etag} for number, etag in parts]
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=s3_id, MultipartUpload={"Parts": listed}
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchUpload":
                raise NotFound(f"upload '{upload_id}'") from None
            if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidRequest"):
                message = error.response.get("Error", {}).get("Message", code)
                raise InvalidArgument(
                    f"the object store refused the parts: {message}", code="invalid_part"
                ) from None
            raise
        with self._ids_lock:
            self._multipart_ids.pop(upload_id, None)

    @_unavailable_on_failure
    def abort_multipart(self, upload_id: str) -> None:
        """Abandon the object store's multipart upload (a no-op when it is gone)."""
        with contextlib.suppress(NotFound):
            s3_id = self._multipart_id(upload_id)
            with contextlib.suppress(ClientError):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.upload_key(upload_id), UploadId=s3_id
                )
        with self._ids_lock:
            self._multipart_ids.pop(upload_id, None)

    @_unavailable_on_failure
    def staged(self, upload_id: str) -> tuple[int, str] | None:
        """Return the size and (bare) ETag of a direct upload's staging object; None: nothing uploaded."""
        head = self._head(self.upload_key(upload_id))
        if head is None:
            return None
        return int(head["ContentLength"]), str(head.get("ETag", "")).strip('"')

    @_unavailable_on_failure
    def adopt_upload(self, upload_id: str) -> BlobRef:
        """Verify a direct upload's bytes and move them to their content address.

        The server reads the staging object back once to compute its SHA-256 (the object store cannot vouch
        for it), copies it inside the store to its content address (unless those bytes are stored already)
        and deletes the staging object.

        Raises:
            NotFound: When nothing was uploaded.

        """
        source = self.upload_key(upload_id)
        verified = self._verified_sha256(source)
        if verified is not None:
            digest, size = verified
            self._move(source, digest, None)
            return BlobRef(key=digest, size=size, sha256=digest)
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=source)
        except ClientError as error:
            if _not_found(error):
                raise NotFound(f"upload '{upload_id}'") from None
            raise
        hasher = hashlib.sha256()
        size = 0
        body = answer["Body"]
        try:
            while chunk := body.read(_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        digest = hasher.hexdigest()
        self._move(source, digest, answer.get("VersionId"))
        return BlobRef(key=digest, size=size, sha256=digest)

    def _verified_sha256(self, key: str) -> tuple[str, int] | None:
        """Return ``(sha256 hex, size)`` when the object store verified the object's whole SHA-256 itself.

        That is the case when the client's PUT carried ``x-amz-checksum-sha256``: the store refuses bytes that
        do not match it and keeps it. Checksums of multipart objects (of part checksums) do not count.
        """
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as error:
            if _not_found(error):
                return None
            raise
        checksum = head.get("ChecksumSHA256") or ""
        if not checksum or "-" in checksum or "-" in head.get("ETag", ""):
            return None
        if head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
            return None
        try:
            raw = base64.b64decode(checksum, validate=True)
        except ValueError:
            return None
        return (raw.hex(), int(head["ContentLength"])) if len(raw) == 32 else None

    def _move(self, source: str, digest: str, version_id: str | None) -> None:
        """Copy a staging object to the content address ``digest`` (unless stored already); delete it."""
        target = self.blob_key(digest)
        if self._head(target) is not None:
            self._touch(target)
        else:
            copy_source: Any = {"Bucket": self.bucket, "Key": source}
            if version_id:
                copy_source["VersionId"] = version_id
            self.client.copy(copy_source, self.bucket, target, Config=_TRANSFER)
        self.client.delete_object(Bucket=self.bucket, Key=source)

    @_unavailable_on_failure
    def sweep_uploads(self, live: Set[str], older_than: float) -> int:
        """Delete staging objects and abandon multipart uploads older than ``older_than`` not in ``live``.

        Returns:
            How many were removed.

        """
        removed = 0
        prefix = f"{self.location.prefix}uploads/"
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                upload_id = item["Key"][len(prefix) :]
                if upload_id not in live and item["LastModified"].timestamp() < older_than:
                    self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
                    removed += 1
        for uploads in self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for upload in uploads.get("Uploads", []):
                upload_id = upload["Key"][len(prefix) :]
                if upload_id not in live and upload["Initiated"].timestamp() < older_than:
                    with contextlib.suppress(ClientError):
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        removed += 1
                    with self._ids_lock:
                        self._multipart_ids.pop(upload_id, None)
        return removed


def open_s3_blob_store(
    url: str,
    *,
    cache_dir: Path,
    cache_bytes: int,
    endpoint_url: str | None = None,
    region: str | None = None,
    credentials: tuple[str, str] | None = None,
    public_endpoint_url: str | None = None,
) -> S3BlobStore:
    """Open the blob store at ``s3://bucket[/prefix]``, checking that the bucket exists and is reachable.

    Raises:
        InvalidArgument: A malformed URL, or a bucket that is missing or refuses these credentials.

    """
    store = S3BlobStore(
        parse_blob_store_url(url),
        BlobCache(cache_dir, cache_bytes),
        endpoint_url=endpoint_url,
        region=region,
        credentials=credentials,
        public_endpoint_url=public_endpoint_url,
    )
    try:
        store.client.head_bucket(Bucket=store.bucket)
    except BotoCoreError as error:
        store.close()
        where = endpoint_url or "AWS S3"
        raise InvalidArgument(
            f"cannot reach the bucket {store.bucket!r} at {where}: {type(error).__name__}"
        ) from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        store.close()
        raise InvalidArgument(
            f"cannot use the bucket {store.bucket!r} at {endpoint_url or 'AWS S3'}: {code}"
        ) from None
    return store


def copy_local_blobs(
    root: Path,
    store: S3BlobStore,
    *,
    workers: int = FETCH_WORKERS,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Copy the blob files of a local blob store (``data_dir/blobs``) into ``store``, verifying each one.

    Each file is hashed first: only one whose bytes match its content address is uploaded (a mismatch raises,
    nothing wrong is ever stored). Blobs the bucket holds already are skipped, so a copy can be resumed.

    Args:
        root: The local store's directory.
        store: The target.
        workers: Files copied at once.
        progress: Called with the number of files handled so far, every 100 files.

    Returns:
        ``(copied, skipped)``.

    Raises:
        CorruptBlob: A file's bytes do not hash to its name.

    """
    files = [
        entry
        for first in sorted(root.iterdir())
        if first.is_dir() and first.name != "tmp"
        for second in sorted(first.iterdir())
        if second.is_dir()
        for entry in sorted(second.iterdir())
        if len(entry.name) == 64 and _HEX.issuperset(entry.name) and entry.is_file()
    ]

    def copy(entry: Path) -> bool:
        key = store.blob_key(entry.name)
        if store._head(key) is not None:
            return False
        digest, _ = _file_sha256(entry)
        if digest != entry.name:
            raise CorruptBlob(f"{entry} holds bytes hashing to {digest}")
        store.client.upload_file(str(entry), store.bucket, key, Config=_TRANSFER)
        return True

    copied = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tilde-blob-copy") as pool:
        for done, was_copied in enumerate(pool.map(_unavailable_on_failure(copy), files), start=1):
            copied += was_copied
            if progress is not None and done % 100 == 0:
                progress(done)
    return copied, len(files) - copied


def _file_sha256(path: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb", buffering=0) as file:
        while chunk := file.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size
