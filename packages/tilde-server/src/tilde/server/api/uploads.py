"""Object uploads: stage + finalize, multipart, and the presigned upload target (CONTRACT #21-#26, §5.3).

The upload target (``PUT /uploads/{upload_id}?…&signature=…``, outside ``/api/v1``, no Authorization) streams
the body into a blob writer. Bytes are gathered into large batches and written (and hashed) in a worker
thread while the next batch is being received, so the event loop never touches the disk and never waits on
a thread per small chunk. It answers ``ETag: "<sha256 hex>"``.

A multipart upload initiated with ``part_size`` (our SDK sends it; other clients do not, and keep one blob
per part) has its parts written straight into one file at their offsets instead, and completing it renames
that file into place rather than copying every part once more. Its initiate answer then also says how many
parts to send at once (``parts_in_flight``, an extension our SDK follows when it is fewer than its own).

Upload targets are single-use: finalize (or complete) consumes them, after which their URLs, token and
finalize answer 409 ``upload_consumed`` (a tombstone row is kept as long as they could still be valid). A
single upload staged with ``size_bytes`` (an extension) accepts at most that many bytes (413
``upload_too_large`` as soon as the excess is known, from ``Content-Length`` or while streaming), and a part
of an upload initiated with ``part_size`` at most that many (413 ``part_too_large``). Upload tokens live as
long as the URLs (``ServerConfig.upload_url_ttl``).
"""

from __future__ import annotations

import asyncio
import uuid
from functools import partial
from typing import Any, Protocol, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api import _direct
from tilde.server.api._signing import (
    UploadTarget,
    check_upload_token,
    upload_token,
    upload_url,
    verify_upload_url,
)
from tilde.server.api._validate import opt_int, opt_str, str_map
from tilde.server.api.common import (
    config_of,
    engine_of,
    object_path,
    public_base_url,
    read_json,
    registry_of,
    required_query,
    resolve_repo,
    run_sync,
    session_query,
)
from tilde.server.errors import ApiError
from tilde.server.registry import Registry, UploadRecord
from tilde.server.registry_principals import UPLOAD_CONSUMED, UPLOAD_ISSUED
from tilde.server.storage import BlobRef, UploadFileStore

#: Bytes gathered before one write in the worker thread.
WRITE_BATCH = 8 * 1024 * 1024
#: Parts an upload written in place asks its client to send at once (``parts_in_flight``, an extension).
IN_PLACE_PARTS_IN_FLIGHT = 2
#: Largest ``size_bytes`` / ``part_size`` a client may declare (an SQLite integer, with room to spare).
MAX_DECLARED_SIZE = 1 << 62
DEFAULT_CONTENT_TYPE = "application/octet-stream"

R = "/organizations/{org}/repositories/{repo}"

T_co = TypeVar("T_co", covariant=True)


def _secret(request: Request) -> bytes:
    secret: bytes = request.app.state.upload_secret
    return secret


class _Sink(Protocol[T_co]):
    """Where received bytes go: a blob writer (its commit gives a `BlobRef`) or an in-place part writer."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> T_co: ...

    def abort(self) -> None: ...


async def _pump(
    request: Request, sink: _Sink[object], limit: int | None = None, too_large: ApiError | None = None
) -> None:
    """Stream the request body into ``sink`` in large batches written by a worker thread.

    Args:
        request: The request whose body to store (Content-Length or chunked).
        sink: Receives the bytes; aborted here on any failure.
        limit: Most bytes accepted; more is a 413, raised as soon as it is known (nothing more is read).
        too_large: The error for a body over ``limit``.

    """
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    batch: list[bytes] = []
    batched = 0
    received = 0
    try:
        if limit is not None:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise too_large or _too_large(limit)
        async for chunk in request.stream():
            if not chunk:
                continue
            received += len(chunk)
            if limit is not None and received > limit:
                raise too_large or _too_large(limit)
            batch.append(chunk)
            batched += len(chunk)
            if batched >= WRITE_BATCH:
                full, batch, batched = batch, [], 0
                if pending is not None:
                    await pending
                # Overlap: this batch is written while the next one is received.
                pending = loop.run_in_executor(None, _write_batch, sink, full)
        if pending is not None:
            await pending
            pending = None
        if batch:
            await run_sync(_write_batch, sink, batch)
    except BaseException:
        if pending is not None and not pending.done():
            # Abort only once the in-flight write finished touching the file.
            pending.add_done_callback(lambda _: sink.abort())
        else:
            sink.abort()
        raise


def _write_batch(sink: _Sink[object], chunks: list[bytes]) -> None:
    """Write received chunks in a worker thread: in one vectored write when the sink has ``write_many``.

    Either way the event loop never copies the batch (the local blob store's sinks never join it at all).
    """
    write_many = getattr(sink, "write_many", None)
    if write_many is not None:
        write_many(chunks)
    else:
        sink.write(b"".join(chunks))


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, "part_too_large", f"a part of this upload holds at most {limit} bytes (its part_size)"
    )


async def _receive(
    request: Request, sink: _Sink[T_co], limit: int | None = None, too_large: ApiError | None = None
) -> T_co:
    """Stream the request body into ``sink`` and commit it (``sink`` is aborted on any failure).

    Args:
        request: The request whose body is the content (Content-Length or chunked).
        sink: A new blob writer, or the writer of one in-place part.
        limit: Most bytes accepted (an in-place part's size, a single upload's declared size).
        too_large: The error for a body over ``limit``.

    """
    await _pump(request, sink, limit, too_large)
    try:
        return await run_sync(sink.commit)
    except BaseException:
        sink.abort()
        raise


def _consumed() -> ApiError:
    return ApiError(409, "upload_consumed", "this upload was already finalized; start a new upload")


def _check_not_consumed(registry: Registry, upload_id: str) -> None:
    """Refuse (409) any further use of an upload that finalize or complete consumed."""
    record = registry.get_upload(upload_id)
    if record is not None and record.state == UPLOAD_CONSUMED:
        raise _consumed()


async def upload_target(request: Request) -> Response:
    """Receive the bytes of a single upload or of one multipart part (presigned, no Authorization)."""
    target: UploadTarget = verify_upload_url(
        _secret(request), request.path_params["upload_id"], dict(request.query_params)
    )
    engine = engine_of(request)
    registry = registry_of(request)
    info = await run_sync(engine.get_session, target.repo_id, target.session_id)
    if info.state != "open":
        raise ApiError(409, "session_closed", f"session {target.session_id} is {info.state}")
    record = await run_sync(registry.get_upload, target.upload_id)
    if record is not None and record.state == UPLOAD_CONSUMED:
        raise _consumed()
    try:
        if target.part_number is not None:
            writer = await run_sync(engine.part_writer, target.upload_id, target.part_number)
            if writer is not None:
                # Written in place: no blob per part, nothing to copy when the upload completes.
                etag = await _receive(request, writer, writer.limit)
                return JSONResponse({"etag": etag, "size": writer.size}, headers={"ETag": etag})
            blob = await _receive(request, engine.blobs.open_writer())
        else:
            if record is None:
                raise ApiError(
                    404, "upload_not_found", "this upload is unknown or expired; start a new upload"
                )
            declared = record.declared_size
            too_large = None
            if declared is not None:
                too_large = ApiError(
                    413, "upload_too_large", f"this upload was declared to hold {declared} bytes"
                )
            blob = await _receive(request, engine.blobs.open_writer(), declared, too_large)
            if declared is not None and blob.size != declared:
                raise ApiError(
                    400,
                    "size_mismatch",
                    f"this upload was declared to hold {declared} bytes, got {blob.size}",
                )
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client went away during the upload") from None
    if target.part_number is not None:
        etag = await run_sync(engine.put_part, target.upload_id, target.part_number, blob)
    else:
        if not await run_sync(registry.receive_upload, target.upload_id, blob.key, blob.size, blob.sha256):
            raise _consumed()
        etag = blob.etag
    return JSONResponse({"etag": etag, "size": blob.size}, headers={"ETag": etag})


async def _open_session(request: Request) -> tuple[str, str, str]:
    """Return ``(repo_id, session_id, path)`` for a write in an open session (409 when it is not open).

    Every upload route checks PutObject on the path.
    """
    path = object_path(request)
    _, repo = resolve_repo(request, "PutObject", path=path)
    session_id = session_query(request)
    info = await run_sync(engine_of(request).get_session, repo.id, session_id)
    if info.state != "open":
        raise ApiError(409, "session_closed", f"session {session_id} is {info.state}")
    return repo.id, session_id, path


def _url_for(request: Request, target: UploadTarget) -> str:
    config = config_of(request)
    return upload_url(_secret(request), public_base_url(request), target, config.upload_url_ttl)


def _token_for(request: Request, repo_id: str, session_id: str, path: str, upload_id: str) -> str:
    # The token lives as long as the URLs: it is what re-signs part URLs, so it must not outlast them.
    ttl = config_of(request).upload_url_ttl
    return upload_token(_secret(request), repo_id, session_id, path, upload_id, ttl)


def _declared_size(request: Request, name: str, minimum: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not minimum <= int(raw) <= MAX_DECLARED_SIZE:
        raise ApiError(
            400, "invalid_parameter", f"{name} must be an integer between {minimum} and {MAX_DECLARED_SIZE}"
        )
    return int(raw)


async def stage_object(request: Request) -> Response:
    """Start a single upload: return a presigned ``upload_url`` and the ``upload_token`` for finalize.

    An optional ``size_bytes`` query parameter (an extension) declares the object's size: the upload URL
    then accepts exactly that many bytes.
    """
    repo_id, session_id, path = await _open_session(request)
    declared = _declared_size(request, "size_bytes", 0)
    upload_id = uuid.uuid4().hex
    target = UploadTarget(upload_id, repo_id, session_id, path, None)
    record = UploadRecord(upload_id, repo_id, session_id, path, declared_size=declared, state=UPLOAD_ISSUED)
    await run_sync(registry_of(request).issue_upload, record)
    token = _token_for(request, repo_id, session_id, path, upload_id)
    direct = _direct.direct_store(engine_of(request))
    if direct is not None:
        return JSONResponse(_direct.stage_answer(direct, request, upload_id, token, _ttl(request)))
    url = _url_for(request, target)
    return JSONResponse({"upload_url": url, "upload_token": token, "upload_id": upload_id})


def _ttl(request: Request) -> float:
    return config_of(request).upload_url_ttl


def _clean_etag(value: str) -> str:
    return value.strip().removeprefix("W/").strip('"').lower()


async def finalize_object(request: Request) -> Response:
    """Check the uploaded bytes against ``size_bytes`` / ``checksum`` and stage them at the path.

    Finalize consumes the upload: a second finalize, or a PUT to its URL afterwards, is 409.
    """
    repo_id, session_id, path = await _open_session(request)
    body = await read_json(request)
    upload_id = check_upload_token(_secret(request), body.get("upload_token"), repo_id, session_id, path)
    content_type = opt_str(body, "content_type", max_len=255) or DEFAULT_CONTENT_TYPE
    size_bytes = opt_int(body, "size_bytes")
    checksum = opt_str(body, "checksum", max_len=200)
    metadata = str_map(body, "metadata")
    registry = registry_of(request)
    record = await run_sync(registry.get_upload, upload_id)
    if record is None or (record.repo_id, record.session_id, record.path) != (repo_id, session_id, path):
        raise ApiError(404, "upload_not_found", "nothing was uploaded for this upload_token")
    if record.state == UPLOAD_CONSUMED:
        raise _consumed()
    direct = _direct.direct_store(engine_of(request))
    if record.state == UPLOAD_ISSUED and direct is not None:
        # The bytes went to the object store: verify them and record them as received.
        clean = _clean_etag(checksum) if checksum else None
        received = await run_sync(_direct.adopt_single, direct, upload_id, record.declared_size, clean)
        checksum = None  # checked against the object store's ETag or the SHA-256 just computed
        if not await run_sync(
            registry.receive_upload, upload_id, received.key, received.size, received.sha256
        ):
            raise _consumed()
        record = await run_sync(registry.get_upload, upload_id) or record
    if record.state == UPLOAD_ISSUED:
        raise ApiError(404, "upload_not_found", "nothing was uploaded for this upload_token")
    if size_bytes is not None and size_bytes != record.size:
        raise ApiError(
            400, "size_mismatch", f"size_bytes is {size_bytes} but {record.size} bytes were uploaded"
        )
    if checksum and _clean_etag(checksum) != record.sha256:
        raise ApiError(400, "checksum_mismatch", "checksum does not match the uploaded bytes")
    # Consume first (atomically), so a concurrent finalize or PUT cannot slip in between check and stage.
    if not await run_sync(registry.consume_upload, upload_id):
        raise _consumed()
    blob = BlobRef(record.blob_key, record.size, record.sha256)
    try:
        version = await run_sync(
            engine_of(request).stage_blob,
            repo_id,
            session_id,
            path,
            blob,
            content_type=content_type,
            metadata=metadata,
        )
    except BaseException:
        await run_sync(registry.release_upload, upload_id)
        raise
    return JSONResponse({"path": version.path, "etag": version.etag}, status_code=201)


async def initiate_multipart(request: Request) -> Response:
    """Start a multipart upload: ``{upload_id, upload_token}``.

    An optional ``part_size`` query parameter (an extension: the size of every part but the last) lets the
    parts be written in place into one file, so completing copies nothing; it also caps every part's size.
    """
    repo_id, session_id, path = await _open_session(request)
    part_size = _declared_size(request, "part_size", 1)
    upload_id = await run_sync(
        engine_of(request).create_upload, repo_id, session_id, path, part_size=part_size
    )
    direct = _direct.direct_store(engine_of(request))
    if direct is not None and _direct.direct_multipart(part_size):
        await run_sync(direct.start_multipart, upload_id)
    token = _token_for(request, repo_id, session_id, path, upload_id)
    body: dict[str, Any] = {"upload_id": upload_id, "upload_token": token}
    if part_size is not None and direct is None and isinstance(engine_of(request).blobs, UploadFileStore):
        # Parts written in place are hashed in order while they arrive: few at once keep that pass close
        # behind the bytes, where many parts finishing together would leave all of them to hash at the end.
        body["parts_in_flight"] = IN_PLACE_PARTS_IN_FLIGHT
    return JSONResponse(body)


def _token_upload_id(request: Request, repo_id: str, session_id: str, path: str, body: dict[str, Any]) -> str:
    token = body.get("upload_token", request.query_params.get("upload_token"))
    upload_id = check_upload_token(_secret(request), token, repo_id, session_id, path)
    claimed = body.get("upload_id", request.query_params.get("upload_id"))
    if claimed is not None and claimed != upload_id:
        raise ApiError(400, "invalid_upload_token", "upload_id does not match upload_token")
    _check_not_consumed(registry_of(request), upload_id)
    return upload_id


async def part_url(request: Request) -> Response:
    """Return the presigned URL for one part (JSON ``{upload_url}``, not a redirect)."""
    repo_id, session_id, path = await _open_session(request)
    upload_id = _token_upload_id(request, repo_id, session_id, path, {})
    raw = required_query(request, "part_number")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 5 or not 1 <= int(raw) <= 10_000:
        raise ApiError(400, "invalid_parameter", "part_number must be an integer between 1 and 10000")
    target = UploadTarget(upload_id, repo_id, session_id, path, int(raw))
    direct = await run_sync(_direct.multipart_store, engine_of(request), upload_id)
    if direct is not None:
        url = await run_sync(direct.presign_part, upload_id, int(raw), _ttl(request))
        return JSONResponse({"upload_url": url})
    return JSONResponse({"upload_url": _url_for(request, target)})


async def complete_multipart(request: Request) -> Response:
    """Concatenate the parts (ascending, etags quoted or not) and stage the object."""
    repo_id, session_id, path = await _open_session(request)
    body = await read_json(request)
    upload_id = _token_upload_id(request, repo_id, session_id, path, body)
    raw_parts = body.get("parts")
    if not isinstance(raw_parts, list):
        raise ApiError(400, "invalid_field", "parts must be a list")
    parts: list[tuple[int, str]] = []
    for item in raw_parts:
        number = item.get("part_number") if isinstance(item, dict) else None
        etag = item.get("etag") if isinstance(item, dict) else None
        if isinstance(number, bool) or not isinstance(number, int) or not isinstance(etag, str):
            raise ApiError(400, "invalid_field", "each part needs an integer part_number and a string etag")
        parts.append((number, '"' + _clean_etag(etag) + '"'))
    numbers = [n for n, _ in parts]
    if numbers != sorted(set(numbers)):
        raise ApiError(400, "invalid_part_order", "parts must be listed once each, in ascending order")
    direct = await run_sync(_direct.multipart_store, engine_of(request), upload_id)
    complete = (
        engine_of(request).complete_upload
        if direct is None
        else partial(_direct.complete_multipart, engine_of(request), direct)
    )
    version = await run_sync(
        complete,
        repo_id,
        session_id,
        path,
        upload_id,
        parts,
        content_type=opt_str(body, "content_type", max_len=255) or DEFAULT_CONTENT_TYPE,
        size_bytes=opt_int(body, "size_bytes"),
    )
    # Its part URLs may still be valid: they answer 409 from now on, like a finalized single upload's.
    tombstone = UploadRecord(upload_id, repo_id, session_id, path, state=UPLOAD_CONSUMED)
    await run_sync(registry_of(request).bury_upload, tombstone)
    return JSONResponse({"path": version.path, "etag": version.etag}, status_code=201)


async def abort_multipart(request: Request) -> Response:
    """Abandon a multipart upload."""
    repo_id, session_id, path = await _open_session(request)
    upload_id = _token_upload_id(request, repo_id, session_id, path, {})
    direct = await run_sync(_direct.multipart_store, engine_of(request), upload_id)
    await run_sync(engine_of(request).abort_upload, upload_id)
    if direct is not None:
        await run_sync(direct.abort_multipart, upload_id)
    return Response(status_code=204)


#: Routes under ``/api/v1``.
routes: list[BaseRoute] = [
    Route(R + "/object", stage_object, methods=["PUT"]),
    Route(R + "/object/finalize", finalize_object, methods=["POST"]),
    Route(R + "/object/multipart", initiate_multipart, methods=["POST"]),
    Route(R + "/object/multipart", abort_multipart, methods=["DELETE"]),
    Route(R + "/object/multipart/part", part_url, methods=["GET"]),
    Route(R + "/object/multipart/complete", complete_multipart, methods=["POST"]),
]

#: Routes at the server root (self-authorising, no bearer token).
root_routes: list[BaseRoute] = [Route("/uploads/{upload_id}", upload_target, methods=["PUT"])]
