"""Transfers straight between clients and an object store (a blob store such as ``S3BlobStore``).

When the engine's blob store can presign its own URLs (`DirectStore`), the upload routes hand out presigned
object-store URLs instead of our own upload target, and object downloads answer ``307`` to a presigned GET:
upload and download bytes never pass through this server's request handling. What stays here:

- single uploads: ``finalize`` finds the bytes at the upload's staging object, checks the declared size,
  verifies them (the server reads them back once to compute the SHA-256 every object is addressed by) and
  moves them to their content address (`adopt_single`);
- multipart uploads: the object store's own multipart upload backs ours; ``complete`` asks the store to
  assemble the listed parts (it checks their ETags), then verifies and moves the result like a single upload
  (`complete_multipart`);
- the upload's guarantees: URLs live ``upload_url_ttl`` like ours; an upload is consumed by its finalize or
  complete, which moves its bytes away from the staging object, so a later PUT to the same URL only creates a
  staging object nobody can finalize again (its record is consumed) and garbage collection deletes; size
  limits are checked when the upload is finalized, against ``size_bytes`` declared when it was staged.
"""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from starlette.requests import Request
from starlette.responses import Response

from tilde.server.errors import ApiError, error_response, request_id_of
from tilde.server.storage import BlobRef, StorageEngine
from tilde.server.storage.errors import NotFound
from tilde.server.storage.types import ObjectVersion

__all__ = [
    "DOWNLOAD_URL_TTL",
    "MIN_DIRECT_PART_SIZE",
    "DirectStore",
    "adopt_single",
    "blob_store_unavailable",
    "complete_multipart",
    "direct_multipart",
    "direct_store",
    "multipart_store",
    "stage_answer",
]

#: Seconds a presigned download URL stays valid (the client follows it at once).
DOWNLOAD_URL_TTL = 300.0
_HEX = frozenset("0123456789abcdef")
logger = logging.getLogger("tilde.server")
#: S3's smallest part (but the last) of a multipart upload.
MIN_DIRECT_PART_SIZE = 5 * 1024 * 1024


@runtime_checkable
class DirectStore(Protocol):
    """A blob store whose clients transfer bytes through presigned URLs of its own."""

    def presign_get(self, blob: BlobRef, ttl: float, content_type: str) -> str:
        """Return a presigned GET of a blob."""
        ...

    def presign_upload(self, upload_id: str, ttl: float, sha256: str | None = None) -> str:
        """Return a presigned PUT of a single upload's bytes (that must hash to ``sha256`` when given)."""
        ...

    def start_multipart(self, upload_id: str) -> None:
        """Start the store's multipart upload behind ours."""
        ...

    def has_multipart(self, upload_id: str) -> bool:
        """Return whether the store's multipart upload backs ours."""
        ...

    def presign_part(self, upload_id: str, part_number: int, ttl: float) -> str:
        """Return a presigned PUT of one part."""
        ...

    def list_multipart_parts(self, upload_id: str) -> list[tuple[int, str, int]]:
        """Return ``(part_number, etag, size)`` of the parts received."""
        ...

    def complete_multipart(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> None:
        """Assemble the listed parts into the upload's staging object."""
        ...

    def abort_multipart(self, upload_id: str) -> None:
        """Abandon the store's multipart upload."""
        ...

    def staged(self, upload_id: str) -> tuple[int, str] | None:
        """Return the size and bare ETag of the upload's staging object (None: nothing uploaded)."""
        ...

    def adopt_upload(self, upload_id: str) -> BlobRef:
        """Verify the staging object and move it to its content address."""
        ...


@functools.lru_cache(maxsize=16)
def _is_direct(kind: type) -> bool:
    # A runtime protocol check looks up every member; a store's class decides it once (it is on every read).
    return issubclass(kind, DirectStore)


def direct_store(engine: StorageEngine) -> DirectStore | None:
    """Return the engine's blob store when clients transfer bytes with it directly, else None."""
    blobs = engine.blobs
    return blobs if _is_direct(type(blobs)) else None  # type: ignore[return-value]


def multipart_store(engine: StorageEngine, upload_id: str) -> DirectStore | None:
    """Return the object store when its own multipart upload backs ``upload_id`` (blocking), else None.

    Uploads initiated with a ``part_size`` below `MIN_DIRECT_PART_SIZE` (S3 refuses smaller parts) have
    their parts sent to this server instead, like with local blobs.
    """
    store = direct_store(engine)
    return store if store is not None and store.has_multipart(upload_id) else None


def direct_multipart(part_size: int | None) -> bool:
    """Return whether a multipart upload with this declared part size can go straight to the object store."""
    return part_size is None or part_size >= MIN_DIRECT_PART_SIZE


def stage_answer(
    store: DirectStore, request: Request, upload_id: str, token: str, ttl: float
) -> dict[str, object]:
    """Return the body answering a stage on an object store: the presigned PUT and the upload's token.

    The optional ``sha256`` query parameter (an extension: the bytes' SHA-256, 64 hex digits) makes the object
    store itself verify the bytes: the URL then requires the ``x-amz-checksum-sha256`` header listed in
    ``upload_headers``, the store refuses other bytes, and finalize need not read them back.

    Raises:
        ApiError: 400 ``invalid_parameter`` for a malformed ``sha256``.

    """
    sha256 = request.query_params.get("sha256")
    if sha256 is not None and (len(sha256) != 64 or not _HEX.issuperset(sha256)):
        raise ApiError(400, "invalid_parameter", "sha256 must be 64 lowercase hex digits")
    body: dict[str, object] = {
        "upload_url": store.presign_upload(upload_id, ttl, sha256),
        "upload_token": token,
        "upload_id": upload_id,
    }
    if sha256 is not None:
        body["upload_headers"] = {"x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(sha256)).decode()}
    return body


def adopt_single(
    store: DirectStore, upload_id: str, declared_size: int | None, checksum: str | None
) -> BlobRef:
    """Check and adopt the bytes a client PUT to a single upload's presigned URL (blocking).

    Args:
        store: The object store.
        upload_id: The upload.
        declared_size: The ``size_bytes`` declared when the upload was staged.
        checksum: The finalize's ``checksum``: the ETag the client's PUT got from the object store (or the
            bytes' SHA-256 hex digest).

    Raises:
        ApiError: 404 ``upload_not_found`` when nothing was uploaded; 413 ``upload_too_large`` or 400
            ``size_mismatch`` when the bytes differ from the declared size; 400 ``checksum_mismatch`` when
            ``checksum`` is neither the stored object's ETag nor its SHA-256.

    """
    staged = store.staged(upload_id)
    if staged is None:
        raise ApiError(404, "upload_not_found", "nothing was uploaded for this upload_token")
    size, etag = staged
    if declared_size is not None and size > declared_size:
        raise ApiError(413, "upload_too_large", f"this upload was declared to hold {declared_size} bytes")
    if declared_size is not None and size != declared_size:
        raise ApiError(
            400, "size_mismatch", f"this upload was declared to hold {declared_size} bytes, got {size}"
        )
    try:
        blob = store.adopt_upload(upload_id)
    except NotFound:
        raise ApiError(404, "upload_not_found", "nothing was uploaded for this upload_token") from None
    if checksum and checksum not in (etag.lower(), blob.sha256):
        raise ApiError(400, "checksum_mismatch", "checksum does not match the uploaded bytes")
    return blob


def complete_multipart(
    engine: StorageEngine,
    store: DirectStore,
    repo_id: str,
    session_id: str,
    path: str,
    upload_id: str,
    parts: Sequence[tuple[int, str]],
    *,
    content_type: str,
    size_bytes: int | None,
) -> ObjectVersion:
    """Complete a multipart upload whose parts went to the object store, and stage it (blocking).

    Raises:
        NotFound: Unknown upload, repository or session.
        InvalidArgument: The upload belongs to another session or path, or the store refused the parts.
        ApiError: 400 ``size_mismatch`` when ``size_bytes`` differs from the assembled size.

    """
    # Checks that the upload is this session's and path's (and still exists).
    engine.list_parts(repo_id, session_id, path, upload_id)
    if not parts:
        # A zero-length stream: S3 cannot complete an upload without parts, and there is nothing to move.
        store.abort_multipart(upload_id)
        with engine.blobs.open_writer() as writer:
            blob = writer.commit()
    else:
        try:
            store.complete_multipart(upload_id, parts)
        except NotFound:
            # A retry after a complete that assembled the parts but failed later: the staging object is there.
            if store.staged(upload_id) is None:
                raise
        blob = store.adopt_upload(upload_id)
    if size_bytes is not None and size_bytes != blob.size:
        raise ApiError(400, "size_mismatch", f"the parts hold {blob.size} bytes, not {size_bytes}")
    version = engine.stage_blob(repo_id, session_id, path, blob, content_type=content_type)
    engine.abort_upload(upload_id)
    return version


def blob_store_unavailable(request: Request, exc: Exception) -> Response:
    """Answer a request the object store failed (unreachable, or a 5xx of its own): 503 with Retry-After."""
    logger.warning(
        "blob store unavailable in %s %s [%s]: %s",
        request.method,
        request.url.path,
        request_id_of(request.scope),
        exc,
    )
    response = error_response(request.scope, 503, "blob_store_unavailable", str(exc))
    response.headers["Retry-After"] = "1"
    return response
