"""Batch uploads: many small files staged into a session in one request.

A folder upload of small files would otherwise cost three requests per file (stage, presigned PUT,
finalize). Servers that support it advertise a batch route in ``GET /capabilities``; `TarBatchStrategy`
sends each batch there as one tar stream, which the server stages atomically. Servers without it (the hosted
API today, older local servers) answer 404 and the files go through the per-file strategies instead; the
answer is remembered for the rest of the client's life, as the multipart 501 is.

Batch strategies are plugins like the per-object ones (`tilde.data.upload_strategies`): they are offered
through the ``tilde_register_batch_upload_strategies`` hook (`tilde.data.hookspecs`), the built-in one
included. Each batch goes to the first strategy, by descending ``priority``, whose ``accepts_batch`` returns
true; a strategy that raises `tilde.data.upload_strategies.StrategyDeclined` hands the batch back, and its
files are then uploaded one by one.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tilde.core.errors import APIError, ForbiddenError
from tilde.data._capabilities import ABSENT_STATUSES, capabilities, forget_batch_routes
from tilde.data.hookspecs import BatchUploadStrategySpec, hookimpl
from tilde.data.models import PutObjectResult
from tilde.data.upload_strategies import StrategyDeclined

if TYPE_CHECKING:
    import pluggy

    from tilde.core import Client as CoreClient

__all__ = [
    "BATCH_FILE_LIMIT",
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_BATCH_FILES",
    "BatchUploadItem",
    "BatchUploadRequest",
    "BatchUploadStrategy",
    "TarBatchStrategy",
    "batch_upload_strategies",
    "builtin_batch_upload_strategies",
]

#: Files smaller than this go into batches; larger ones are uploaded one by one (streamed or multipart).
BATCH_FILE_LIMIT = 1024 * 1024
#: Most files per batch request.
DEFAULT_BATCH_FILES = 1000
#: Most file bytes per batch request (each batch is held in memory while it is sent).
DEFAULT_BATCH_BYTES = 8 * 1024 * 1024

_CONTENT_TYPE_RECORD = "TILDE.content_type"
_OCTET_STREAM = "application/octet-stream"
_BATCH_TIMEOUT = 300.0
_lock = threading.Lock()


@dataclass(frozen=True)
class BatchUploadItem:
    """One local file of a batch.

    Attributes:
        path: The object path to stage it at.
        source: The local file (read when the batch is sent).
        size: Its size when it was found (for batching decisions and progress).
        content_type: Recorded with the object.

    """

    path: str
    source: Path
    size: int
    content_type: str = _OCTET_STREAM


@dataclass
class BatchUploadRequest:
    """A batch of small files to stage in one session, handed to batch strategies.

    Attributes:
        client: The client whose transport members to use.
        org: The organization name.
        repo: The repository name.
        session_id: The session the files are staged in.
        items: The files, in upload order; their paths are distinct.

    """

    client: CoreClient
    org: str
    repo: str
    session_id: str
    items: list[BatchUploadItem] = field(default_factory=list)

    @property
    def size(self) -> int:
        """The sum of the items' sizes."""
        return sum(item.size for item in self.items)


@runtime_checkable
class BatchUploadStrategy(Protocol):
    """What a plugin registers through ``tilde_register_batch_upload_strategies``.

    Attributes:
        name: A short unique name, for errors and logs.
        priority: Higher goes first (the built-in uses 0).

    """

    name: str
    priority: int

    def limits(self, client: CoreClient) -> tuple[int, int, int] | None:
        """Return ``(max_files, max_file_bytes, max_batch_bytes)`` for batches on ``client``'s server.

        ``None`` means the strategy cannot batch there at all (it is then not asked again for this upload).
        """
        ...

    def accepts_batch(self, batch: BatchUploadRequest) -> bool:
        """Whether this strategy wants to send ``batch`` (must not read the files)."""
        ...

    def upload_batch(self, batch: BatchUploadRequest) -> list[PutObjectResult]:
        """Stage every file of the batch in the session, all or none.

        Returns:
            One result per item, in the items' order.

        Raises:
            StrategyDeclined: The batch was not staged; its files are to be uploaded another way.

        """
        ...


class TarBatchStrategy:
    """Send a batch as one tar stream to the advertised ``objects:batch`` route.

    Args:
        max_files: Most files per request (the server's own limit applies too).
        max_batch_bytes: Most file bytes per request; the batch is built in memory, so this bounds the
            memory each concurrent batch holds.
        max_file_bytes: Files at least this large are left to the per-file strategies.

    """

    name = "tar-batch"
    priority = 0

    def __init__(
        self,
        *,
        max_files: int = DEFAULT_BATCH_FILES,
        max_batch_bytes: int = DEFAULT_BATCH_BYTES,
        max_file_bytes: int = BATCH_FILE_LIMIT,
    ) -> None:
        self.max_files = max_files
        self.max_batch_bytes = max_batch_bytes
        self.max_file_bytes = max_file_bytes

    def limits(self, client: CoreClient) -> tuple[int, int, int] | None:
        """Return the smaller of this strategy's limits and the server's (None without a batch route)."""
        capability = capabilities(client).batch_upload
        if capability is None:
            return None
        # Leave room in the body for the tar headers (512 bytes per member, more for long names).
        body_room = capability.max_body_bytes // 2
        return (
            min(self.max_files, capability.max_files),
            min(self.max_file_bytes, capability.max_file_bytes + 1),
            min(self.max_batch_bytes, body_room),
        )

    def accepts_batch(self, batch: BatchUploadRequest) -> bool:
        """Batches within the limits, when the server has a batch route."""
        limits = self.limits(batch.client)
        if limits is None or not batch.items:
            return False
        max_files, max_file_bytes, max_batch_bytes = limits
        return (
            len(batch.items) <= max_files
            and all(item.size < max_file_bytes for item in batch.items)
            and batch.size <= max_batch_bytes
        )

    def upload_batch(self, batch: BatchUploadRequest) -> list[PutObjectResult]:
        """POST the tar; a server without the route (or refusing the batch as a whole) declines."""
        capability = capabilities(batch.client).batch_upload
        if capability is None:
            raise StrategyDeclined("the server has no batch route")
        body = _tar_of(batch.items)
        route = capability.url(batch.org, batch.repo)
        params = {"session_id": batch.session_id, "prefix": _common_prefix([i.path for i in batch.items])}
        try:
            response = batch.client._request(
                "POST",
                route,
                params=params,
                content=body,
                headers={"Content-Type": "application/x-tar"},
                timeout=_BATCH_TIMEOUT,
            )
        except ForbiddenError as error:
            # Policies are per path: rights granted for several prefixes may cover every file without
            # covering the batch's common prefix. One by one, each file gets its own verdict.
            raise StrategyDeclined("the batch as a whole was refused") from error
        except APIError as error:
            if error.status_code in ABSENT_STATUSES:
                forget_batch_routes(batch.client)
                raise StrategyDeclined("the server has no batch route") from error
            raise
        return _results(response.json(), batch.items)


def _tar_of(items: list[BatchUploadItem]) -> bytes:
    """Build the tar stream of ``items`` in memory (PAX records only where a name or type needs one)."""
    import tarfile  # only batch uploads build archives: kept out of the import

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as archive:
        for item in items:
            data = item.source.read_bytes()
            info = tarfile.TarInfo(item.path)
            info.size = len(data)
            info.mode = 0o644
            if item.content_type and item.content_type != _OCTET_STREAM:
                info.pax_headers = {_CONTENT_TYPE_RECORD: item.content_type}
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _common_prefix(paths: list[str]) -> str:
    if not paths:
        return ""
    low, high = min(paths), max(paths)
    size = 0
    while size < min(len(low), len(high)) and low[size] == high[size]:
        size += 1
    return low[:size]


def _results(document: Any, items: list[BatchUploadItem]) -> list[PutObjectResult]:
    staged = document.get("objects") if isinstance(document, dict) else None
    by_path: dict[str, str] = {}
    if isinstance(staged, list):
        for entry in staged:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                by_path[entry["path"]] = str(entry.get("etag") or "")
    return [PutObjectResult(path=item.path, etag=by_path.get(item.path, "")) for item in items]


def batch_upload_strategies(client: CoreClient) -> list[BatchUploadStrategy]:
    """Return the batch strategies offered by ``client``'s plugins, highest precedence first.

    Gathered once per client. A plugin manager made without the batch hooks (one passed in by the caller)
    gets them, and the built-in strategy, added here.

    Args:
        client: The client.

    Returns:
        The strategies.

    """
    cached: list[BatchUploadStrategy] | None = getattr(client, "_batch_strategies", None)
    if cached is not None:
        return list(cached)
    with _lock:
        manager: pluggy.PluginManager | None = getattr(client, "_plugin_manager", None)
        if manager is None:
            from tilde.data.plugins import make_plugin_manager

            manager = make_plugin_manager()
        if not hasattr(manager.hook, "tilde_register_batch_upload_strategies"):
            manager.add_hookspecs(BatchUploadStrategySpec)
            manager.register(builtin_batch_upload_strategies)
        found: list[BatchUploadStrategy] = []
        manager.hook.tilde_register_batch_upload_strategies(register=found.append)
        ordered = sorted(found, key=lambda strategy: -int(getattr(strategy, "priority", 0)))
        client._batch_strategies = ordered  # type: ignore[attr-defined]
        return list(ordered)


class _BuiltinBatchStrategies:
    """The plugin object that registers the built-in batch strategy through the public hook."""

    @hookimpl
    def tilde_register_batch_upload_strategies(self, register: Callable[[BatchUploadStrategy], None]) -> None:
        register(TarBatchStrategy())


#: The built-in plugin (registered by `tilde.data.plugins.make_plugin_manager`).
builtin_batch_upload_strategies = _BuiltinBatchStrategies()
