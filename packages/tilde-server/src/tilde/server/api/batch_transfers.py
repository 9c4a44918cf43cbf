"""Batch transfers: many small objects staged or fetched in one request, and the capabilities document.

``POST R/objects:batch?session_id=…[&prefix=…]`` takes a tar stream (``Content-Type: application/x-tar``) of
regular files whose member names are the object paths, and stages every one of them into the session in one
transaction: either every file is staged or none is. It answers ``201 {"staged": n, "objects": [{"path",
"etag", "size"}…]}`` in the order of the archive.

Why tar rather than ``multipart/form-data``: each member's header states its name and size before its
bytes, so limits are enforced from the headers alone; names are UTF-8 in PAX records (no per-client
``filename``/``filename*`` encoding rules, no boundary scanning over every byte); the standard library reads
and writes it on both ends; and ``tar -cf - …`` from a shell makes a valid body without any SDK.

The body is streamed to a temporary file (never held in memory) and then checked as a whole before any byte
is stored: every member must be a regular file (directory entries are ignored), every name a valid object
path starting with ``prefix``, no name twice, no file over `MAX_FILE_BYTES`, no more than `MAX_FILES` files
and no body over `MAX_BODY_BYTES`. ``PutObject`` is authorized for every path (policies are per path); the
``prefix`` query parameter, which the SDK sets to the paths' longest common prefix, lets a caller that may
not write there be refused before the body is read. A member may carry its content type as the PAX record
``TILDE.content_type``.

``POST R/objects:download?[session_id=…|ref=…]`` with ``{"paths": [...]}`` (1 to `MAX_DOWNLOAD_FILES`)
answers a tar stream of those objects, in the order given, as one would read them one by one (a session's
view, a commit, or the head). ``GetObject`` is authorized for every path and every object is looked up
before the first byte is sent, so a refused or missing path fails the request (403 or 404) as a whole. The
response has an exact ``Content-Length``; member names are the object paths.

``GET /capabilities`` tells clients which optional extensions this server has, so they can use them and fall
back to the standard flows on servers without (a 404 there, as on servers that predate it). Setting the
environment variable ``TILDE_SERVER_BATCH_UPLOADS=0`` switches all three routes off (they answer 404, as on
a server without them), which is how clients' fallbacks are tested.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from tilde.server.api.common import (
    auth_of,
    check_session,
    checked_path,
    config_of,
    engine_of,
    query,
    read_json,
    require_principal,
    resolve_repo,
    run_sync,
    session_query,
)
from tilde.server.errors import ApiError
from tilde.server.storage import BlobRef, InvalidArgument, NewObject, ObjectVersion, StorageEngine

__all__ = [
    "BATCH_CONTENT_TYPE",
    "ENV_SWITCH",
    "MAX_BODY_BYTES",
    "MAX_DOWNLOAD_FILES",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "capabilities_document",
    "routes",
]

R = "/organizations/{org}/repositories/{repo}"

#: The only body type the batch route reads.
BATCH_CONTENT_TYPE = "application/x-tar"
#: Most files in one batch.
MAX_FILES = 10_000
#: Largest single file in a batch (larger objects belong to the single or multipart flows).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Largest request body (the tar stream, headers and padding included).
MAX_BODY_BYTES = 256 * 1024 * 1024
#: Most objects one download request names.
MAX_DOWNLOAD_FILES = 1000
#: ``0``/``false``/``off`` switches the batch route and its advertisement off.
ENV_SWITCH = "TILDE_SERVER_BATCH_UPLOADS"
#: The PAX record a member may carry its content type in.
CONTENT_TYPE_RECORD = "TILDE.content_type"

# Body bytes gathered before one write to the spool file in a worker thread.
_SPOOL_BATCH = 1024 * 1024
_READ_CHUNK = 1024 * 1024
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
_OCTET_STREAM = "application/octet-stream"


def batch_uploads_enabled() -> bool:
    """Whether the batch route is on (``TILDE_SERVER_BATCH_UPLOADS``, read on every request)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def capabilities_document() -> dict[str, Any]:
    """Return the ``GET /capabilities`` body for the current settings."""
    batch: dict[str, Any] | None = None
    if batch_uploads_enabled():
        batch = {
            "path": R + "/objects:batch",
            "content_type": BATCH_CONTENT_TYPE,
            "max_files": MAX_FILES,
            "max_file_bytes": MAX_FILE_BYTES,
            "max_body_bytes": MAX_BODY_BYTES,
        }
    download: dict[str, Any] | None = None
    if batch_uploads_enabled():
        download = {"path": R + "/objects:download", "max_files": MAX_DOWNLOAD_FILES}
    return {"batch_upload": batch, "batch_download": download}


def _switched_off() -> ApiError:
    return ApiError(404, "not_found", "this server has no batch uploads")


async def capabilities(request: Request) -> Response:
    """Describe the optional extensions of this server (any authenticated caller, sandbox tokens too)."""
    require_principal(request)
    if not batch_uploads_enabled():
        raise _switched_off()
    return JSONResponse(capabilities_document())


@dataclass(frozen=True)
class _Member:
    """One file of the archive, located in the spooled body."""

    path: str
    offset: int
    size: int
    content_type: str


def _bad(message: str, code: str = "invalid_archive") -> ApiError:
    return ApiError(400, code, message)


def _read_members(spool: Path, prefix: str) -> list[_Member]:
    """Read every member header of the spooled archive and check it (nothing is stored here)."""
    members: list[_Member] = []
    seen: set[str] = set()
    try:
        with tarfile.open(spool, mode="r:", encoding="utf-8", errors="strict") as archive:
            for info in archive:
                if info.type == tarfile.DIRTYPE:
                    continue  # directories do not exist in a repository; `tar -cf - dir` emits them
                if info.type not in _FILE_TYPES:
                    raise _bad(f"{info.name!r} is not a regular file (links and devices are refused)")
                path = checked_path(info.name)
                if not path.startswith(prefix):
                    raise _bad(f"{path!r} does not start with the batch's prefix {prefix!r}", "invalid_path")
                if path in seen:
                    raise _bad(f"{path!r} appears twice in the batch", "duplicate_path")
                if info.size > MAX_FILE_BYTES:
                    raise ApiError(
                        413, "payload_too_large", f"{path!r} is larger than {MAX_FILE_BYTES} bytes"
                    )
                if len(members) == MAX_FILES:
                    raise ApiError(413, "payload_too_large", f"a batch holds at most {MAX_FILES} files")
                content_type = info.pax_headers.get(CONTENT_TYPE_RECORD) or _OCTET_STREAM
                if len(content_type) > 255 or not content_type.isprintable():
                    raise _bad(f"invalid content type for {path!r}", "invalid_field")
                seen.add(path)
                members.append(_Member(path, info.offset_data, info.size, content_type))
    except (tarfile.TarError, UnicodeError, EOFError) as error:
        raise _bad(f"the body is not a readable tar archive: {error}") from None
    if not members:
        raise _bad("the batch holds no files")
    end = spool.stat().st_size
    for member in members:
        if member.offset + member.size > end:
            raise _bad(f"the archive ends inside {member.path!r}")
    return members


def _store_members(
    engine: StorageEngine, spool: Path, repo_id: str, session_id: str, members: list[_Member]
) -> list[dict[str, Any]]:
    """Copy every member's bytes into the blob store, then stage them all in one transaction.

    A store that can (the local one) stores the whole batch at once and makes it durable with two
    filesystem flushes instead of two per member.
    """
    with spool.open("rb", buffering=0) as body:
        blobs = _store_blobs(engine, body.fileno(), members)
    staged = [
        NewObject(path=member.path, blob=blob, content_type=member.content_type)
        for member, blob in zip(members, blobs, strict=True)
    ]
    # One transaction: every object is staged or, on any error, none is (stored blobs nothing refers to
    # are collected later).
    engine.stage_objects(repo_id, session_id, staged)
    return [{"path": item.path, "etag": item.blob.etag, "size": item.blob.size} for item in staged]


def _store_blobs(engine: StorageEngine, fd: int, members: list[_Member]) -> list[BlobRef]:
    store_ranges = getattr(engine.blobs, "store_ranges", None)
    if store_ranges is not None:
        try:
            stored: list[BlobRef] = store_ranges(fd, [(member.offset, member.size) for member in members])
        except InvalidArgument as error:
            raise _bad(f"the archive ends inside a member ({error})") from None
        return stored
    blobs: list[BlobRef] = []
    for member in members:
        with engine.blobs.open_writer() as writer:
            done = 0
            while done < member.size:
                chunk = os.pread(fd, min(_READ_CHUNK, member.size - done), member.offset + done)
                if not chunk:
                    raise _bad(f"the archive ends inside {member.path!r}")
                writer.write(chunk)
                done += len(chunk)
            blobs.append(writer.commit())
    return blobs


async def _spool(request: Request, directory: Path) -> Path:
    """Stream the body into a new temporary file under ``directory`` (413 past `MAX_BODY_BYTES`)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="batch-", suffix=".tar", dir=directory)
    spool = Path(name)
    try:
        with open(fd, "wb", buffering=0) as sink:
            pending: list[bytes] = []
            pending_size = received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > MAX_BODY_BYTES:
                    raise _too_large()
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _SPOOL_BATCH:
                    await run_sync(sink.write, b"".join(pending))
                    pending, pending_size = [], 0
            if pending:
                await run_sync(sink.write, b"".join(pending))
    except ClientDisconnect:
        spool.unlink(missing_ok=True)
        raise ApiError(400, "client_disconnected", "the client went away during the upload") from None
    except BaseException:
        spool.unlink(missing_ok=True)
        raise
    return spool


def _too_large() -> ApiError:
    return ApiError(413, "payload_too_large", f"a batch body holds at most {MAX_BODY_BYTES} bytes")


def _spool_dir(request: Request) -> Path:
    # The blob store's own temporary directory: same filesystem, and swept of leftovers at start-up.
    tmp_dir = getattr(engine_of(request).blobs, "tmp_dir", None)
    return Path(tmp_dir) if tmp_dir is not None else config_of(request).data_dir / "tmp"


async def batch_upload(request: Request) -> Response:
    """Stage every file of a tar body into the session, atomically (see the module docstring)."""
    if not batch_uploads_enabled():
        raise _switched_off()
    prefix = query(request, "prefix") or ""
    # Checked before the body is read, so a caller who may not write under the prefix is refused at once;
    # every path is checked again below.
    org, repo = resolve_repo(request, "PutObject", path=prefix)
    session_id = session_query(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != BATCH_CONTENT_TYPE:
        raise ApiError(415, "unsupported_media_type", f"a batch body must be {BATCH_CONTENT_TYPE}")
    engine = engine_of(request)
    info = await run_sync(engine.get_session, repo.id, session_id)
    if info.state != "open":
        raise ApiError(409, "session_closed", f"session {session_id} is {info.state}")
    spool = await _spool(request, _spool_dir(request))
    try:
        members = await run_sync(_read_members, spool, prefix)
        auth, principal = auth_of(request), require_principal(request)
        for member in members:
            auth.authorize(principal, "PutObject", org, repo, path=member.path)
        objects = await run_sync(_store_members, engine, spool, repo.id, session_id, members)
    finally:
        with contextlib.suppress(OSError):
            spool.unlink()
    return JSONResponse({"staged": len(objects), "objects": objects}, status_code=201)


def _stat_all(
    engine: StorageEngine, repo_id: str, paths: list[str], session_id: str | None, ref: str | None
) -> list[ObjectVersion]:
    return [engine.stat(repo_id, path, session_id=session_id, ref=ref) for path in paths]


def _tar_header(version: ObjectVersion) -> bytes:
    info = tarfile.TarInfo(version.path)
    info.size = version.size
    info.mode = 0o644
    info.mtime = int(version.last_modified.timestamp())
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def _padding(size: int) -> int:
    return -size % tarfile.BLOCKSIZE


def _archive_chunks(engine: StorageEngine, members: list[tuple[bytes, ObjectVersion]]) -> Any:
    """Yield the tar stream in pieces of about `_READ_CHUNK` (StreamingResponse runs this in a thread)."""
    pending: list[bytes] = []
    pending_size = 0
    for header, version in members:
        pending.append(header)
        pending_size += len(header)
        with engine.blob_path(version.blob).open("rb", buffering=0) as blob:
            left = version.size
            while left > 0:
                chunk = blob.read(min(_READ_CHUNK, left))
                if not chunk:
                    # Stored blobs never shrink; stop rather than send a stream that lies about its length.
                    raise RuntimeError(f"blob of {version.path!r} is shorter than recorded")
                pending.append(chunk)
                pending_size += len(chunk)
                left -= len(chunk)
                if pending_size >= _READ_CHUNK:
                    yield b"".join(pending)
                    pending, pending_size = [], 0
        pending.append(b"\0" * _padding(version.size))
    pending.append(b"\0" * (2 * tarfile.BLOCKSIZE))
    yield b"".join(pending)


async def batch_download(request: Request) -> Response:
    """Answer a tar stream of the named objects (see the module docstring)."""
    if not batch_uploads_enabled():
        raise _switched_off()
    body = await read_json(request)
    paths = body.get("paths")
    if not isinstance(paths, list) or not 1 <= len(paths) <= MAX_DOWNLOAD_FILES:
        raise ApiError(
            400, "invalid_field", f"paths must be a list of 1 to {MAX_DOWNLOAD_FILES} object paths"
        )
    if not all(isinstance(p, str) for p in paths):
        raise ApiError(400, "invalid_field", "paths must be strings")
    checked = [checked_path(p) for p in paths]
    if len(set(checked)) != len(checked):
        raise ApiError(400, "duplicate_path", "paths must be distinct")
    org, repo = resolve_repo(request, "GetObject", path=checked[0])
    auth, principal = auth_of(request), require_principal(request)
    for path in checked[1:]:
        auth.authorize(principal, "GetObject", org, repo, path=path)
    session_id = query(request, "session_id") or None
    if session_id is not None:
        check_session(request, session_id)
    ref = query(request, "ref") or None
    engine = engine_of(request)
    versions = await run_sync(_stat_all, engine, repo.id, checked, session_id, ref)
    members = [(_tar_header(version), version) for version in versions]
    length = sum(len(h) + v.size + _padding(v.size) for h, v in members) + 2 * tarfile.BLOCKSIZE
    return StreamingResponse(
        _archive_chunks(engine, members),
        media_type=BATCH_CONTENT_TYPE,
        headers={"Content-Length": str(length)},
    )


#: Routes under ``/api/v1``.
routes: list[BaseRoute] = [
    Route("/capabilities", capabilities, methods=["GET"]),
    Route(R + "/objects:batch", batch_upload, methods=["POST"]),
    Route(R + "/objects:download", batch_download, methods=["POST"]),
]
