"""The parallel multipart upload engine behind `MultipartUploadStrategy`.

The caller's thread reads parts from the source one at a time and hands them to a thread pool; it reads the
next part only once fewer than ``max_parts_in_flight`` are outstanding, so memory stays bounded by
``max_parts_in_flight * part_size`` whatever the object size. Every part but the last holds exactly
``part_size`` bytes (``UploadSource.read_block`` only returns fewer at the end), which the initiate call
announces as a hint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from tilde.core.errors import APIError, TildeError, TransportError
from tilde.data.models import PutObjectResult, _text
from tilde.data.upload_strategies import _OCTET_STREAM, StrategyDeclined, UploadRequest, _result

_NOT_IMPLEMENTED = 501

# Part retries at INFO and aborts at WARNING: a user seeing a slow or failed upload should find out why
# without DEBUG. Never the upload token or a part URL's signature.
logger = logging.getLogger("tilde.data.upload")

#: Size of the slices a part is sent in (see `single_use`).
_SEND_CHUNK = 1024 * 1024


def multipart_upload(upload: UploadRequest) -> PutObjectResult:
    """Initiate, upload every part, complete; abort on any failure.

    Args:
        upload: The upload request.

    Returns:
        The staged object's path and ETag.

    Raises:
        StrategyDeclined: The server answered 501 (remembered on the client).

    """
    client = upload.client
    base = f"{upload.repository_path}/object/multipart"
    # ``part_size`` is an extension: every part but the last has exactly this size, so a server that knows it
    # can write each part straight to its final offset instead of concatenating the parts when completing.
    # Servers that do not know it ignore it.
    initiate = {**upload.params, "part_size": str(upload.settings.part_size)}
    try:
        started = client._post_json(base, params=initiate) or {}
    except APIError as exc:
        if exc.status_code == _NOT_IMPLEMENTED:
            upload.mark_multipart_unsupported()
            raise StrategyDeclined(str(exc)) from exc
        raise
    ids = {"upload_id": _text(started, "upload_id"), "upload_token": _text(started, "upload_token")}
    logger.debug("multipart upload of %s started (upload_id=%s)", upload.path, ids["upload_id"])
    try:
        parts, total = _upload_parts(upload, ids)
        body: dict[str, Any] = {
            **ids,
            "parts": [{"part_number": number, "etag": etag} for number, etag in parts],
            "content_type": upload.content_type,
            "size_bytes": total,
        }
        done = client._post_json(f"{base}/complete", params=upload.params, json=body)
    except BaseException as exc:
        logger.warning(
            "multipart upload of %s (upload_id=%s) failed, aborting it: %s: %s",
            upload.path,
            ids["upload_id"],
            type(exc).__name__,
            exc,
        )
        _abort(upload, ids)
        if isinstance(exc, APIError) and exc.status_code == _NOT_IMPLEMENTED:
            upload.mark_multipart_unsupported()
            raise StrategyDeclined(str(exc)) from exc
        raise
    logger.debug("multipart upload of %s completed: %d parts, %d bytes", upload.path, len(parts), total)
    return _result(done, upload.path)


def _upload_parts(upload: UploadRequest, ids: dict[str, str]) -> tuple[list[tuple[int, str]], int]:
    settings = upload.settings
    etags: dict[int, str] = {}
    total = 0
    number = 0
    pool = ThreadPoolExecutor(max_workers=settings.max_parts_in_flight, thread_name_prefix="tilde-upload")
    pending: set[Future[tuple[int, str]]] = set()
    try:
        while True:
            if len(pending) >= settings.max_parts_in_flight:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                _collect(finished, etags)
            block = upload.source.read_block(settings.part_size)
            if not block:
                break
            number += 1
            total += len(block)
            pending.add(pool.submit(_put_part, upload, ids, number, block))
            del block  # the future holds the only reference, so the part is freed once sent
        finished, pending = wait(pending)
        _collect(finished, etags)
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    return sorted(etags.items()), total


def _collect(finished: set[Future[tuple[int, str]]], etags: dict[int, str]) -> None:
    for future in finished:
        number, etag = future.result()
        etags[number] = etag


def _put_part(upload: UploadRequest, ids: dict[str, str], number: int, block: bytes) -> tuple[int, str]:
    """PUT one part, asking for a fresh URL on every try (an expired URL answers 403)."""
    client = upload.client
    settings = upload.settings
    params = {**upload.params, **ids, "part_number": str(number)}
    for attempt in range(settings.part_attempts):
        target = client._get_json(f"{upload.repository_path}/object/multipart/part", params=params)
        try:
            response = client._presigned_put(
                _text(target, "upload_url"),
                single_use(block),
                headers={"Content-Type": _OCTET_STREAM, "Content-Length": str(len(block))},
            )
        except TransportError as exc:
            if attempt + 1 >= settings.part_attempts:
                raise
            # Back off a little: a failing upload target is usually overloaded or restarting.
            delay = settings.retry_backoff * (2**attempt)
            logger.info(
                "multipart upload of %s: part %d failed (%s); retrying in %.2fs, fresh URL (try %d of %d)",
                upload.path,
                number,
                exc,
                delay,
                attempt + 2,
                settings.part_attempts,
            )
            time.sleep(delay)
            continue
        return number, response.headers.get("etag", "")
    raise AssertionError("unreachable")  # pragma: no cover


def single_use(block: bytes, chunk_size: int = _SEND_CHUNK) -> Iterator[bytes]:
    """Yield a part in ``chunk_size`` slices, dropping the reference to it once sent.

    Two reasons. httpx responses sit in a reference cycle (response -> bound stream -> response) that only the
    cyclic garbage collector frees, and each one keeps its request, whose body would keep the part's bytes
    alive: passing ``bytes`` held every sent part in memory until a collection happened to run; an exhausted
    generator drops its reference. And httpcore sends a body chunk by re-slicing the unsent rest after every
    partial ``send``, which is quadratic in the chunk's size: one 64 MiB chunk crawled at a few dozen MB/s,
    1 MiB slices go at socket speed.
    """
    view = memoryview(block)
    del block
    for offset in range(0, len(view), chunk_size):
        yield bytes(view[offset : offset + chunk_size])


def _abort(upload: UploadRequest, ids: dict[str, str]) -> None:
    try:
        upload.client._delete(f"{upload.repository_path}/object/multipart", params={**upload.params, **ids})
    except TildeError as exc:
        # The original failure matters more than a failed cleanup: log it and let the first error propagate.
        logger.warning(
            "could not abort multipart upload of %s (upload_id=%s): %s", upload.path, ids["upload_id"], exc
        )
