"""Object reads, listings, changes, copy and delete (CONTRACT #17-#20, #27-#29, §5.2, §5.4, §5.5).

Uploads (stage, finalize, multipart) live in `tilde.server.api.uploads`.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._blobresponse import BlobResponse, parse_range
from tilde.server.api._direct import DOWNLOAD_URL_TTL, direct_store
from tilde.server.api._listing_cache import ListingCache, ObjectKey, PageKey, SmallObject
from tilde.server.api.common import (
    MAX_PAGE_SIZE,
    auth_of,
    check_session,
    checked_path,
    engine_of,
    object_path,
    page_params,
    paged,
    query,
    read_json,
    require_principal,
    resolve_repo,
    run_sync,
    session_query,
)
from tilde.server.api.serialize import change_json, listing_page_bytes
from tilde.server.errors import ApiError
from tilde.server.storage import StorageEngine

R = "/organizations/{org}/repositories/{repo}"
MAX_DELETE = 1000
#: Reads of at most this many bytes are answered in one body, read on the event loop: one ``pread`` of a
#: blob in the page cache takes microseconds, far less than handing the read to a worker thread and
#: streaming it. Larger reads stream from a worker thread (`BlobResponse`).
INLINE_READ_MAX = 64 * 1024


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(moment: datetime) -> str:
    """Format a datetime as an HTTP date (``Last-Modified``), e.g. ``Tue, 01 Dec 2026 08:00:00 GMT``.

    Naive values are taken as UTC. Formatted directly: `email.utils.format_datetime` took a tenth of a small
    object read.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return (
        f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year:04d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} GMT"
    )


def _read_view(request: Request) -> tuple[str | None, str | None]:
    """Return ``(session_id, ref)`` for a read (a sandbox token may only read its own session)."""
    session_id = query(request, "session_id") or None
    if session_id is not None:
        check_session(request, session_id)
    return session_id, query(request, "ref") or None


async def get_object(request: Request) -> Response:
    """Serve an object's bytes (200, 206 for a satisfiable ``Range``, else 416); HEAD: headers only.

    An object of at most `INLINE_READ_MAX` bytes read at a commit (the head or a ``ref``) is kept with its
    headers in the app's read cache, keyed by the commit id: its later reads, once authorized, need one
    point look-up (which commit is read) and no file access.
    """
    path = object_path(request)
    _, repo = resolve_repo(request, "GetObject", path=path)
    session_id, ref = _read_view(request)
    engine = engine_of(request)
    key: ObjectKey | None = None
    if session_id is None:
        # Point look-ups on an index (tens of microseconds): cheaper on the event loop than a thread hand-off.
        commit_id = engine.view_commit(repo.id, ref)
        if commit_id is not None:
            key = ObjectKey(repo.id, commit_id, path)
            cached = _read_caches(request).objects.get(key)
            if cached is not None:
                return _small_response(request, cached)
            ref = commit_id  # read exactly the commit of the key, even if the head moves meanwhile
    version = engine.stat(repo.id, path, session_id=session_id, ref=ref)
    headers = {
        "ETag": version.etag,
        "Content-Type": version.content_type or "application/octet-stream",
        "Last-Modified": http_date(version.last_modified),
        "Accept-Ranges": "bytes",
    }
    for name, value in version.metadata.items():
        if name.isascii() and value.isascii() and name.replace("-", "").isalnum():
            headers[f"X-Tilde-Meta-{name}"] = value
    if request.method == "HEAD":
        return Response(status_code=200, headers={**headers, "Content-Length": str(version.size)})
    direct = direct_store(engine)
    if direct is None:
        blob_path = engine.blob_path(version.blob)
    elif require_principal(request).scope is None:
        # The bytes come straight from the object store (the client resends any Range there).
        url = direct.presign_get(version.blob, DOWNLOAD_URL_TTL, headers["Content-Type"])
        return Response(status_code=307, headers={**headers, "Location": url, "Cache-Control": "no-store"})
    else:
        # Code in a sandbox (a sandbox token) reaches this server through its relays but not the object
        # store: it gets the bytes from here, through the node's blob cache (filled off the event loop).
        blob_path = await run_sync(engine.blob_path, version.blob)
    if version.size <= INLINE_READ_MAX:
        small = SmallObject(tuple(headers.items()), version.size, _read_small(blob_path, 0, version.size))
        if key is not None:
            _read_caches(request).objects.put(key, small, version.size + _ENTRY_OVERHEAD)
        return _small_response(request, small)
    byte_range = parse_range(request.headers.get("range"), version.size)
    status, start, end = 200, 0, version.size
    if byte_range is not None:
        status, (start, end) = 206, byte_range
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{version.size}"
    if end - start <= INLINE_READ_MAX:
        return Response(_read_small(blob_path, start, end), status_code=status, headers=headers)
    return BlobResponse(blob_path, start, end, status, headers)


#: Bytes counted for a cached small object besides its data (its headers and bookkeeping).
_ENTRY_OVERHEAD = 512


def _small_response(request: Request, small: SmallObject) -> Response:
    """Answer a read of a small object held in memory (HEAD, a ``Range`` or the whole object)."""
    headers = dict(small.headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(small.size)
        return Response(status_code=200, headers=headers)
    byte_range = parse_range(request.headers.get("range"), small.size)
    if byte_range is None:
        return Response(small.data, headers=headers)
    start, end = byte_range
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{small.size}"
    return Response(small.data[start:end], status_code=206, headers=headers)


def _read_small(path: Path, start: int, end: int) -> bytes:
    """Read ``[start, end)`` of a small immutable blob in one call, on the event loop."""
    if end <= start:
        return b""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, end - start, start)
    finally:
        os.close(fd)
    if len(data) != end - start:
        raise OSError(f"{path} is shorter than expected")
    return data


async def list_objects(request: Request) -> Response:
    """List objects in path order (``session_id`` view, ``ref`` commit, or the head).

    Pages of a commit are immutable: they are encoded once and then served from the app's `ListingCache`
    (``app.state.listing_cache``), keyed by the commit id the request reads, after the usual authorization.
    """
    prefix = query(request, "prefix") or ""
    _, repo = resolve_repo(request, "ListObjects", path=prefix)
    session_id, ref = _read_view(request)
    amount, after = page_params(request)
    delimiter = query(request, "delimiter") or ""
    engine = engine_of(request)
    key: PageKey | None = None
    if session_id is None:
        # One point look-up, on the event loop like `get_object`'s: which commit this request reads.
        commit_id = engine.view_commit(repo.id, ref)
        if commit_id is not None:
            key = PageKey(repo.id, commit_id, prefix, delimiter, after, amount)
            body = _read_caches(request).pages.get(key)
            if body is not None:
                return Response(body, media_type="application/json")
            ref = commit_id  # list exactly the commit of the key, even if the head moves meanwhile
    # Listed and encoded in one worker thread: the event loop only sends the bytes.
    body = await run_sync(
        _encoded_listing,
        engine,
        repo.id,
        session_id=session_id,
        ref=ref,
        prefix=prefix,
        delimiter=delimiter,
        after=after,
        limit=amount,
    )
    if key is not None:
        _read_caches(request).pages.put(key, body, len(body))
    return Response(body, media_type="application/json")


def _encoded_listing(engine: StorageEngine, repo_id: str, **listing: Any) -> bytes:
    return listing_page_bytes(engine.list_records(repo_id, **listing), MAX_PAGE_SIZE)


def _read_caches(request: Request) -> ListingCache:
    cache: ListingCache = request.app.state.listing_cache
    return cache


async def list_changes(request: Request) -> Response:
    """List a session's staged changes (a deletion has no ``entry``)."""
    prefix = query(request, "prefix") or ""
    _, repo = resolve_repo(request, "ListObjects", path=prefix)
    session_id = session_query(request)
    amount, after = page_params(request)
    page = await run_sync(
        engine_of(request).list_changes,
        repo.id,
        session_id,
        prefix=prefix,
        after=after,
        limit=amount,
    )
    return paged([change_json(c) for c in page.items], page.has_more, page.next_cursor)


async def delete_object(request: Request) -> Response:
    """Stage the deletion of one object (404 when nothing is visible at the path)."""
    path = object_path(request)
    _, repo = resolve_repo(request, "DeleteObject", path=path)
    session_id = session_query(request)
    if not await run_sync(engine_of(request).stage_delete, repo.id, session_id, path):
        raise ApiError(404, "not_found", f"object {path!r} not found")
    return Response(status_code=204)


async def delete_many(request: Request) -> Response:
    """Stage the deletion of 1-1000 paths: ``{deleted: <count>}`` (DeleteObject is checked for each path)."""
    body = await read_json(request)
    paths = body.get("paths")
    if not isinstance(paths, list) or not 1 <= len(paths) <= MAX_DELETE:
        raise ApiError(400, "invalid_field", f"paths must be a list of 1 to {MAX_DELETE} object paths")
    if not all(isinstance(p, str) for p in paths):
        raise ApiError(400, "invalid_field", "paths must be strings")
    checked = [checked_path(p) for p in paths]
    org, repo = resolve_repo(request, "DeleteObject", path=checked[0])
    principal = require_principal(request)
    for path in checked[1:]:
        auth_of(request).authorize(principal, "DeleteObject", org, repo, path=path)
    session_id = session_query(request)
    deleted = await run_sync(engine_of(request).delete_many, repo.id, session_id, checked)
    return JSONResponse({"deleted": deleted})


async def copy_object(request: Request) -> Response:
    """Stage a metadata-only copy (PutObject on the destination, GetObject on the source)."""
    source = object_path(request, "source_path")
    destination = object_path(request, "destination_path")
    org, repo = resolve_repo(request, "PutObject", path=destination)
    auth_of(request).authorize(require_principal(request), "GetObject", org, repo, path=source)
    session_id = session_query(request)
    await run_sync(engine_of(request).stage_copy, repo.id, session_id, source, destination)
    return JSONResponse({"source_path": source, "destination_path": destination}, status_code=201)


routes: list[BaseRoute] = [
    Route(R + "/object", get_object, methods=["GET", "HEAD"]),
    Route(R + "/object", delete_object, methods=["DELETE"]),
    Route(R + "/objects", list_objects, methods=["GET"]),
    Route(R + "/objects/delete", delete_many, methods=["POST"]),
    Route(R + "/object/copy", copy_object, methods=["POST"]),
    Route(R + "/changes", list_changes, methods=["GET"]),
]
