"""How objects get uploaded: the strategy protocol, the per-upload request, and the two built-in strategies.

The built-ins follow the wire contract (CONTRACT §5.3): a single presigned PUT below the threshold, and a
parallel multipart upload at or above it or when the size is unknown, falling back to the single PUT for the
rest of the client's life once the server answers 501. The multipart initiate call also carries the part size
as a ``part_size`` query parameter, a hint servers may use to place parts without copying them (others
ignore it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tilde.data.hookspecs import hookimpl
from tilde.data.models import PutObjectResult, _text
from tilde.data.upload_source import UploadSource

if TYPE_CHECKING:
    from tilde.core import Client as CoreClient

__all__ = [
    "DEFAULT_MAX_PARTS_IN_FLIGHT",
    "DEFAULT_PART_SIZE",
    "DEFAULT_UPLOAD_THRESHOLD",
    "MultipartUploadStrategy",
    "SinglePutStrategy",
    "StrategyDeclined",
    "UploadRequest",
    "UploadSettings",
    "UploadStrategy",
    "builtin_upload_strategies",
    "run_upload",
]

#: Objects of known size below this many bytes go through a single presigned PUT.
DEFAULT_UPLOAD_THRESHOLD = 64 * 1024 * 1024
#: Size of each multipart part (the last one may be shorter).
DEFAULT_PART_SIZE = 64 * 1024 * 1024
#: Parts uploaded concurrently; also bounds memory to this many parts.
DEFAULT_MAX_PARTS_IN_FLIGHT = 8

_OCTET_STREAM = "application/octet-stream"

logger = logging.getLogger("tilde.data.upload")


@dataclass(frozen=True)
class UploadSettings:
    """Tunables for the built-in strategies (set per client).

    Attributes:
        threshold: Known sizes below this use a single PUT; larger or unknown sizes use multipart.
        part_size: Bytes per multipart part.
        max_parts_in_flight: Parts uploaded at once. Parts of files and in-memory data are read while they
            are sent, never held whole.
        part_attempts: Tries per part before the upload is aborted; each try asks for a fresh part URL.
        retry_backoff: Seconds before the second try of a part, doubling for each later one (a
            ``Retry-After`` from the upload target wins).
        max_buffered_bytes: Most bytes of parts held in memory for sources that can only be read forward
            (iterators, pipes), which limits their parts in flight (one at least).

    """

    threshold: int = DEFAULT_UPLOAD_THRESHOLD
    part_size: int = DEFAULT_PART_SIZE
    max_parts_in_flight: int = DEFAULT_MAX_PARTS_IN_FLIGHT
    part_attempts: int = 5
    retry_backoff: float = 0.25
    max_buffered_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("upload threshold must be >= 0")
        if self.part_size < 1:
            raise ValueError("multipart part size must be >= 1")
        if self.max_parts_in_flight < 1:
            raise ValueError("max parts in flight must be >= 1")
        if self.part_attempts < 1:
            raise ValueError("part attempts must be >= 1")
        if self.max_buffered_bytes < 0:
            raise ValueError("max buffered bytes must be >= 0")


@dataclass
class UploadRequest:
    """One object upload, handed to strategies.

    Attributes:
        client: The client whose transport members (``_put_json``, ``_presigned_put`` …) to use.
        repository_path: ``/organizations/{org}/repositories/{repo}``.
        session_id: The session the object is staged in.
        path: The object path.
        source: The bytes to send.
        content_type: Recorded with the object.
        settings: The client's upload settings.

    """

    client: CoreClient
    repository_path: str
    session_id: str
    path: str
    source: UploadSource
    content_type: str = _OCTET_STREAM
    settings: UploadSettings = field(default_factory=UploadSettings)

    @property
    def params(self) -> dict[str, str]:
        """The ``session_id`` and ``path`` query parameters every upload call carries."""
        return {"session_id": self.session_id, "path": self.path}

    @property
    def multipart_unsupported(self) -> bool:
        """Whether this client already learned that the server has no multipart uploads (a 501)."""
        return bool(getattr(self.client, "_multipart_unsupported", False))

    def mark_multipart_unsupported(self) -> None:
        """Remember, for the rest of the client's life, that multipart uploads answer 501."""
        logger.info("the server has no multipart uploads (501); this client uses single PUTs from now on")
        self.client._multipart_unsupported = True  # type: ignore[attr-defined]


@runtime_checkable
class UploadStrategy(Protocol):
    """What a plugin registers through ``tilde_register_upload_strategies``.

    Attributes:
        name: A short unique name, for errors and logs.
        priority: Higher goes first (the built-ins use 0).

    """

    name: str
    priority: int

    def accepts(self, upload: UploadRequest) -> bool:
        """Whether this strategy wants to handle ``upload`` (must not consume the source)."""
        ...

    def upload(self, upload: UploadRequest) -> PutObjectResult:
        """Upload the object and stage it in the session.

        Raises:
            StrategyDeclined: This strategy cannot complete the upload; the next accepting one is tried.

        """
        ...


class StrategyDeclined(Exception):
    """Raised by a strategy to hand the upload to the next accepting strategy."""


def run_upload(strategies: list[UploadStrategy], upload: UploadRequest) -> PutObjectResult:
    """Upload through the first accepting strategy, moving on whenever one declines.

    Args:
        strategies: In precedence order.
        upload: The upload.

    Returns:
        The staged object's path and ETag.

    Raises:
        ValueError: No strategy accepts the upload (or the source cannot be rewound after a decline).

    """
    declined: list[str] = []
    remaining = list(strategies)
    while True:
        # Rescan from the top after a decline: the decline may change what the others accept (a 501 makes
        # the single PUT take uploads it would otherwise leave to multipart).
        strategy = next((candidate for candidate in remaining if candidate.accepts(upload)), None)
        if strategy is None:
            break
        remaining.remove(strategy)
        logger.debug(
            "uploading %s (%s bytes) with the %r strategy", upload.path, upload.source.size, strategy.name
        )
        try:
            return strategy.upload(upload)
        except StrategyDeclined as exc:
            logger.info(
                "upload strategy %r declined %s (%s); trying the next one", strategy.name, upload.path, exc
            )
            declined.append(strategy.name)
            try:
                upload.source.rewind()
            except ValueError:
                raise ValueError(
                    f"upload strategy {strategy.name!r} declined after consuming a source that cannot be "
                    "rewound"
                ) from exc
    raise ValueError(f"no upload strategy accepts {upload.path!r} (declined: {declined or 'none'})")


class SinglePutStrategy:
    """Stage the object, PUT the bytes to the presigned URL in one request, then finalize."""

    name = "single"
    priority = 0

    def accepts(self, upload: UploadRequest) -> bool:
        """Known sizes below the threshold, and everything once multipart is known to be unsupported."""
        size = upload.source.size
        return upload.multipart_unsupported or (size is not None and size < upload.settings.threshold)

    def upload(self, upload: UploadRequest) -> PutObjectResult:
        """Upload in one presigned PUT; unknown sizes are sent chunked."""
        client = upload.client
        staged = client._put_json(f"{upload.repository_path}/object", params=upload.params) or {}
        counter = _ByteCounter()
        headers = {"Content-Type": _OCTET_STREAM}
        if upload.source.size is not None:
            headers["Content-Length"] = str(upload.source.size)
        # Streamed in chunks whatever the size: memory stays at one chunk, and the finished request (which
        # httpx frees only in a cyclic garbage collection) holds an exhausted generator, not the bytes.
        content = counter.wrap(upload.source.iter_chunks())
        response = client._presigned_put(_text(staged, "upload_url"), content, headers=headers)
        body: dict[str, Any] = {
            "upload_token": _text(staged, "upload_token"),
            "content_type": upload.content_type,
        }
        etag = response.headers.get("etag")
        if etag:
            body["checksum"] = etag.strip('"')
        body["size_bytes"] = counter.total
        done = client._post_json(f"{upload.repository_path}/object/finalize", params=upload.params, json=body)
        return _result(done, upload.path)


class MultipartUploadStrategy:
    """Upload parts in parallel (bounded), retry failed parts with fresh URLs, abort on failure."""

    name = "multipart"
    priority = 0

    def accepts(self, upload: UploadRequest) -> bool:
        """Unknown sizes and sizes at or above the threshold, unless the server lacks multipart."""
        size = upload.source.size
        return not upload.multipart_unsupported and (size is None or size >= upload.settings.threshold)

    def upload(self, upload: UploadRequest) -> PutObjectResult:
        """Run the multipart flow (CONTRACT §5.3); a 501 anywhere declines in favour of the single PUT."""
        from tilde.data._multipart import multipart_upload

        return multipart_upload(upload)


class _ByteCounter:
    def __init__(self) -> None:
        self.total = 0

    def wrap(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.total += len(chunk)
            yield chunk


def _result(done: dict[str, Any] | None, path: str) -> PutObjectResult:
    result = PutObjectResult.from_dict(done or {})
    if not result.path:
        result.path = path
    return result


class _BuiltinStrategies:
    """The plugin object that registers the built-in strategies through the public hook."""

    @hookimpl
    def tilde_register_upload_strategies(self, register: Callable[[UploadStrategy], None]) -> None:
        register(SinglePutStrategy())
        register(MultipartUploadStrategy())


#: The built-in plugin (registered by `tilde.data.plugins.make_plugin_manager`).
builtin_upload_strategies = _BuiltinStrategies()
