"""The parallel multipart upload engine behind `MultipartUploadStrategy` and `SessionObjects.resume_upload`.

Parts of a file (or of in-memory data) are never held whole: each part is read at its offset, one chunk at a
time, while it is being sent (``os.pread``, so worker threads read their parts concurrently), and read again
from the file when it has to be resent. Memory stays at a few chunks per part in flight, whatever the part
size.

Sources that can only be read forward (iterators, pipes) are read one part at a time by the caller's thread,
and a part stays in memory until it has been sent (it cannot be read again); fewer of them are in flight, so
they hold at most ``max_buffered_bytes`` (at least one part).

Every try of a part asks for a fresh part URL (an expired URL answers 403). A failed try is retried with
backoff, after the server's ``Retry-After`` when it sent one (429, 503); only the parts that failed are sent
again. Every part but the last holds exactly ``part_size`` bytes, which the initiate call announces as a hint.

Resuming (`resume_multipart`) lists the parts the server already holds (``GET R/object/multipart`` with the
upload's id and token), keeps those whose size and SHA-256 match the local bytes, and sends only the others.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

import httpx

from tilde.core._logging import redact_url
from tilde.core._transport import UPLOAD_TIMEOUT
from tilde.core.errors import APIError, TildeError, TransportError, parse_retry_after
from tilde.data.models import MultipartUpload, PutObjectResult, _text
from tilde.data.upload_strategies import _OCTET_STREAM, StrategyDeclined, UploadRequest, _result

_NOT_IMPLEMENTED = 501
#: Statuses of an upload target worth another try after a pause (the server asks, or is briefly down).
_RETRY_LATER = frozenset({408, 429, 500, 502, 503, 504})
#: An upload URL that expired or whose signature no longer checks: ask for a fresh one and try again.
_STALE_URL = 403
#: Longest pause a ``Retry-After`` can impose on one part.
_MAX_RETRY_AFTER = 60.0

# Part retries at INFO and aborts at WARNING: a user seeing a slow or failed upload should find out why
# without DEBUG. Never the upload token or a part URL's signature.
logger = logging.getLogger("tilde.data.upload")

#: Size of the slices a part is sent in (see `single_use`).
_SEND_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class _Part:
    """One part: where it lies in the source, or (forward-only sources) its bytes."""

    number: int
    offset: int
    length: int
    data: bytes | None = None


def initiate(upload: UploadRequest) -> MultipartUpload:
    """Start a multipart upload (``POST R/object/multipart``), announcing the part size.

    Raises:
        StrategyDeclined: The server answered 501 (remembered on the client).

    """
    # ``part_size`` is an extension: every part but the last has exactly this size, so a server that knows it
    # can write each part straight to its final offset instead of concatenating the parts when completing.
    # Servers that do not know it ignore it.
    params = {**upload.params, "part_size": str(upload.settings.part_size)}
    try:
        started = upload.client._post_json(f"{upload.repository_path}/object/multipart", params=params) or {}
    except APIError as exc:
        if exc.status_code == _NOT_IMPLEMENTED:
            upload.mark_multipart_unsupported()
            raise StrategyDeclined(str(exc)) from exc
        raise
    ids = MultipartUpload(upload.path, _text(started, "upload_id"), _text(started, "upload_token"))
    logger.debug("multipart upload of %s started (upload_id=%s)", upload.path, ids.upload_id)
    # An extension: a server that assembles the parts in place, hashing them in order as they arrive,
    # asks for few parts at once (many parts finishing together leave it all of them to hash at the end).
    hint = started.get("parts_in_flight")
    if (
        isinstance(hint, int)
        and not isinstance(hint, bool)
        and 0 < hint < upload.settings.max_parts_in_flight
    ):
        upload.settings = replace(upload.settings, max_parts_in_flight=hint)
    return ids


def multipart_upload(upload: UploadRequest) -> PutObjectResult:
    """Initiate, upload every part, complete; abort on any failure.

    Args:
        upload: The upload request.

    Returns:
        The staged object's path and ETag.

    Raises:
        StrategyDeclined: The server answered 501 (remembered on the client).

    """
    ids = initiate(upload)
    try:
        return _finish(upload, ids, {})
    except BaseException as exc:
        logger.warning(
            "multipart upload of %s (upload_id=%s) failed, aborting it: %s: %s",
            upload.path,
            ids.upload_id,
            type(exc).__name__,
            exc,
        )
        _abort(upload, ids)
        if isinstance(exc, APIError) and exc.status_code == _NOT_IMPLEMENTED:
            upload.mark_multipart_unsupported()
            raise StrategyDeclined(str(exc)) from exc
        raise


def resume_multipart(upload: UploadRequest, ids: MultipartUpload) -> PutObjectResult:
    """Send the parts the server lacks of an upload started earlier (by any process), then complete it.

    Nothing is aborted on failure: the same call can be made again later.

    Args:
        upload: The upload request (its source must hold the same bytes as when the upload started).
        ids: The upload's id and token.

    Returns:
        The staged object's path and ETag.

    """
    listed = upload.client._get_json(
        f"{upload.repository_path}/object/multipart", params={**upload.params, **ids.params()}
    )
    part_size = listed.get("part_size")
    if (
        isinstance(part_size, int)
        and not isinstance(part_size, bool)
        and 0 < part_size != upload.settings.part_size
    ):
        # The server placed the parts at multiples of the size the upload started with: keep it.
        upload.settings = replace(upload.settings, part_size=part_size)
    held: dict[int, tuple[str, int]] = {}
    for item in listed.get("parts") or []:
        if not isinstance(item, dict):
            continue
        number, etag, size = item.get("part_number"), item.get("etag"), item.get("size")
        if isinstance(number, int) and isinstance(etag, str) and isinstance(size, int):
            held[number] = (etag, size)
    logger.info(
        "resuming multipart upload of %s (upload_id=%s): the server holds %d part(s)",
        upload.path,
        ids.upload_id,
        len(held),
    )
    return _finish(upload, ids, held)


def _finish(upload: UploadRequest, ids: MultipartUpload, held: dict[int, tuple[str, int]]) -> PutObjectResult:
    parts, total = _upload_parts(upload, ids, held)
    body: dict[str, Any] = {
        **ids.params(),
        "parts": [{"part_number": number, "etag": etag} for number, etag in parts],
        "content_type": upload.content_type,
        "size_bytes": total,
    }
    done = upload.client._post_json(
        f"{upload.repository_path}/object/multipart/complete", params=upload.params, json=body
    )
    logger.debug("multipart upload of %s completed: %d parts, %d bytes", upload.path, len(parts), total)
    return _result(done, upload.path)


def _upload_parts(
    upload: UploadRequest, ids: MultipartUpload, held: dict[int, tuple[str, int]]
) -> tuple[list[tuple[int, str]], int]:
    settings = upload.settings
    source = upload.source
    etags: dict[int, str] = {}
    if source.random_access and source.size is not None:
        size = source.size
        count = math.ceil(size / settings.part_size)
        parts = [
            _Part(
                n, (n - 1) * settings.part_size, min(settings.part_size, size - (n - 1) * settings.part_size)
            )
            for n in range(1, count + 1)
        ]
        in_flight = settings.max_parts_in_flight
        blocks: Iterator[_Part] = iter(parts)
        total = size
    else:
        # Each part waits in memory until sent: bound how many may wait at once.
        in_flight = max(
            1, min(settings.max_parts_in_flight, settings.max_buffered_bytes // settings.part_size)
        )
        counter = [0]
        blocks = _forward_parts(upload, counter)
        total = -1
    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="tilde-upload")
    pending: set[Future[tuple[int, str]]] = set()
    try:
        for part in blocks:
            kept = _matching_part(upload, part, held.get(part.number))
            if kept is not None:
                etags[part.number] = kept
                continue
            if len(pending) >= in_flight:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                _collect(finished, etags)
            pending.add(pool.submit(_put_part, upload, ids, part))
            del part  # the future holds the only reference, so a buffered part is freed once sent
        finished, pending = wait(pending)
        _collect(finished, etags)
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    if total < 0:
        total = counter[0]
    return sorted(etags.items()), total


def _forward_parts(upload: UploadRequest, counter: list[int]) -> Iterator[_Part]:
    number = 0
    while True:
        block = upload.source.read_block(upload.settings.part_size)
        if not block:
            return
        number += 1
        offset = counter[0]
        counter[0] += len(block)
        yield _Part(number, offset, len(block), block)
        del block


def _part_chunks(upload: UploadRequest, part: _Part) -> Iterator[bytes]:
    if part.data is not None:
        return single_use(part.data)
    return upload.source.iter_range(part.offset, part.length, _SEND_CHUNK)


def _matching_part(upload: UploadRequest, part: _Part, held: tuple[str, int] | None) -> str | None:
    """Return the server's etag for ``part`` when it holds the local bytes (same size and SHA-256)."""
    if held is None:
        return None
    etag, size = held
    if size != part.length:
        return None
    digest = hashlib.sha256()
    for chunk in _part_chunks(upload, part):
        digest.update(chunk)
    if etag.strip().strip('"').lower() != digest.hexdigest():
        logger.info(
            "part %d of %s differs from the server's copy; sending it again", part.number, upload.path
        )
        return None
    return etag


def _collect(finished: set[Future[tuple[int, str]]], etags: dict[int, str]) -> None:
    for future in finished:
        number, etag = future.result()
        etags[number] = etag


class _PartFailed(Exception):
    """One try of a part failed in a way another try (with a fresh URL) may fix."""

    def __init__(self, what: str, delay: float | None) -> None:
        super().__init__(what)
        self.delay = delay


def _put_part(upload: UploadRequest, ids: MultipartUpload, part: _Part) -> tuple[int, str]:
    """PUT one part, asking for a fresh URL on every try; the bytes are read again for each try."""
    client = upload.client
    settings = upload.settings
    params = {**upload.params, **ids.params(), "part_number": str(part.number)}
    http: httpx.Client = client._upload_http
    headers = {"Content-Type": _OCTET_STREAM, "Content-Length": str(part.length)}
    for attempt in range(settings.part_attempts):
        url = ""
        try:
            url = _part_url(upload, params)
            return part.number, _send_once(http, url, _part_chunks(upload, part), headers)
        except _PartFailed as failed:
            if attempt + 1 >= settings.part_attempts:
                raise TransportError(
                    f"PUT {redact_url(url)} (part {part.number} of {upload.path}) {failed}"
                ) from failed
            # Without a Retry-After, back off a little: a failing target is usually overloaded or restarting.
            delay = failed.delay if failed.delay is not None else settings.retry_backoff * (2**attempt)
            logger.info(
                "multipart upload of %s: part %d %s; retrying in %.2fs with a fresh URL (try %d of %d)",
                upload.path,
                part.number,
                failed,
                delay,
                attempt + 2,
                settings.part_attempts,
            )
            if delay:
                time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _part_url(upload: UploadRequest, params: dict[str, str]) -> str:
    """Ask for a fresh URL for one part; an API still busy after the client's own retries fails one try."""
    try:
        target = upload.client._get_json(f"{upload.repository_path}/object/multipart/part", params=params)
    except APIError as exc:
        if exc.status_code not in _RETRY_LATER:
            raise
        asked = parse_retry_after(exc.headers.get("retry-after")) if exc.headers else None
        raise _PartFailed(f"got no URL ({exc.status_code})", asked) from exc
    return _text(target, "upload_url")


def _send_once(http: httpx.Client, url: str, chunks: Iterator[bytes], headers: dict[str, str]) -> str:
    """One PUT of a part; returns its ETag.

    Raises:
        _PartFailed: A network failure, a status worth retrying (with the ``Retry-After`` delay when sent),
            or an expired URL (403).
        TransportError: Any other non-2xx answer.

    """
    try:
        request = http.build_request("PUT", url, content=chunks, headers=headers, timeout=UPLOAD_TIMEOUT)
        response = http.send(request)
    except httpx.HTTPError as exc:
        raise _PartFailed(f"failed ({type(exc).__name__}: {exc})", None) from exc
    finally:
        close = getattr(chunks, "close", None)
        if callable(close):
            close()
    if response.is_success:
        etag: str = response.headers.get("etag", "")
        return etag
    status = response.status_code
    excerpt = response.text[:200]
    if status in _RETRY_LATER:
        asked = parse_retry_after(response.headers.get("Retry-After"))
        raise _PartFailed(
            f"failed (answered {status})", None if asked is None else min(asked, _MAX_RETRY_AFTER)
        )
    if status == _STALE_URL:
        raise _PartFailed(f"failed (answered {status}: {excerpt})", 0.0)
    raise TransportError(f"PUT {redact_url(url)} -> {status}: {excerpt}")


def single_use(block: bytes, chunk_size: int = _SEND_CHUNK) -> Iterator[bytes]:
    """Yield a part in ``chunk_size`` slices.

    Slices rather than the whole part: httpcore sends a body chunk by re-slicing the unsent rest after every
    partial ``send``, which is quadratic in the chunk's size: one 64 MiB chunk crawled at a few dozen MB/s,
    1 MiB slices go at socket speed. A generator rather than ``bytes``: a finished httpx request (freed only
    by the cyclic garbage collector) then holds an exhausted generator, not the part.
    """
    view = memoryview(block)
    for offset in range(0, len(view), chunk_size):
        yield bytes(view[offset : offset + chunk_size])


def _abort(upload: UploadRequest, ids: MultipartUpload) -> None:
    try:
        upload.client._delete(
            f"{upload.repository_path}/object/multipart", params={**upload.params, **ids.params()}
        )
    except TildeError as exc:
        # The original failure matters more than a failed cleanup: log it and let the first error propagate.
        logger.warning(
            "could not abort multipart upload of %s (upload_id=%s): %s", upload.path, ids.upload_id, exc
        )
