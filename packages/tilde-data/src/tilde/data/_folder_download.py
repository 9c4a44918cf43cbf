"""``download(prefix, local_dir)``: list what is under a prefix, then fetch it concurrently into a folder.

Every object streams into a temporary file next to its destination, which is renamed into place once
complete, so an interrupted download never leaves a truncated file under the final name. Object paths that
would land outside the folder (``..`` segments, or a symbolic link inside the folder pointing elsewhere) are
refused before anything is written to them.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import secrets
import tarfile
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING

from tilde.core.errors import APIError, SerializationError
from tilde.data._capabilities import ABSENT_STATUSES, BatchRoute, capabilities, forget_batch_routes
from tilde.data._folder_upload import folder_prefix
from tilde.data.batch_uploads import BATCH_FILE_LIMIT, DEFAULT_BATCH_BYTES
from tilde.data.transfers import FolderTransferResult, TransferProgress, _SerialProgress

if TYPE_CHECKING:
    from tilde.data.objects import _ObjectReads

__all__ = ["download_folder", "safe_relative"]

_CHUNK = 1024 * 1024
_LIST_PAGE = 1000
_BATCH_TIMEOUT = 300.0
_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
)


def safe_relative(relative: str) -> list[str] | None:
    """Split an object path relative to the prefix into segments, or None if it could escape the folder."""
    if not relative or relative.startswith("/") or "\x00" in relative:
        return None
    segments = relative.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return None
    if os.sep != "/" and any(os.sep in segment or (os.altsep or "/") in segment for segment in segments):
        return None
    return segments


def _escapes(root_real: str, directory: str) -> bool:
    real = os.path.realpath(directory)
    return not (real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep))


class _Downloader:
    def __init__(self, objects: _ObjectReads, root: Path, progress: _SerialProgress) -> None:
        self._objects = objects
        self._root = root
        self._root_real = os.path.realpath(root)
        self._progress = progress
        self._stop = threading.Event()
        self._mkdir_lock = threading.Lock()
        #: Directories made (when missing) and found inside the folder: checked once per download.
        self._checked: set[Path] = set()
        # Temporary names: a random token per download and a counter (with O_EXCL, as mkstemp, minus its
        # per-file name generation and its private mode, which would need one more call to undo).
        self._token = secrets.token_hex(4)
        self._count = itertools.count()

    def _directory(self, path: str, target: Path) -> Path:
        """Make the directory of ``target`` (once) and check that it lies inside the folder."""
        directory = target.parent
        if directory in self._checked:
            return directory
        with self._mkdir_lock:
            directory.mkdir(parents=True, exist_ok=True)
        # Checked after the directories exist: a symbolic link among them must not lead out of the folder.
        if _escapes(self._root_real, str(directory)):
            raise ValueError(f"refusing to write object {path!r}: {str(target)!r} lies outside the folder")
        self._checked.add(directory)
        return directory

    def _place(self, path: str, segments: list[str], write: Callable[[int], None]) -> None:
        """Write one file through a temporary file beside it, renamed into place when complete.

        ``write`` gets the temporary file's descriptor and writes the bytes with ``os.write``.
        """
        target = self._root.joinpath(*segments)
        directory = self._directory(path, target)
        temporary = os.path.join(directory, f".tilde-{self._token}-{next(self._count)}.part")
        # 0o666 less the umask: the mode a plain open() gives, as the finished file should have.
        fd = os.open(temporary, _CREATE_FLAGS, 0o666)
        try:
            try:
                write(fd)
            finally:
                os.close(fd)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._progress.advance(files=1)

    def fetch(self, path: str, segments: list[str]) -> None:
        """Download one object with its own GET, streamed to disk."""
        if self._stop.is_set():
            return

        def write(fd: int) -> None:
            with self._objects.get(path, cache=False) as reader:
                for chunk in reader.iter_bytes(_CHUNK):
                    _write_all(fd, chunk)
                    self._progress.advance(bytes=len(chunk))

        self._place(path, segments, write)

    def fetch_batch(self, route: BatchRoute, group: list[tuple[str, list[str], int]]) -> None:
        """Download small objects as one tar (their bytes arrive in memory: the group is bounded)."""
        if self._stop.is_set():
            return
        objects = self._objects
        try:
            response = objects._client._request(
                "POST",
                route.url(objects._org, objects._repo),
                params=objects._scope(),
                json={"paths": [path for path, _, _ in group]},
                timeout=_BATCH_TIMEOUT,
            )
        except APIError as error:
            if error.status_code not in ABSENT_STATUSES:
                raise
            if error.status_code != 404:
                forget_batch_routes(objects._client)
            # A 404 may also name an object deleted since the listing: one by one, each gets its verdict.
            for path, segments, _ in group:
                self.fetch(path, segments)
            return
        wanted: dict[str, list[str] | None] = {path: segments for path, segments, _ in group}
        body = response.content
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:", encoding="utf-8") as archive:
            view = memoryview(body)
            for member in archive:
                placed = wanted.pop(member.name, None)
                if placed is None or not member.isfile() or member.issparse():
                    raise SerializationError(f"unexpected member {member.name!r} in a batch download")
                data = view[member.offset_data : member.offset_data + member.size]
                if len(data) != member.size:
                    raise SerializationError(f"a batch download ended inside {member.name!r}")

                # The member's bytes straight from the body (no file object, no copy).
                def write(fd: int, data: memoryview = data) -> None:
                    _write_all(fd, data)

                self._place(member.name, placed, write)
                self._progress.advance(bytes=member.size)
        if wanted:
            raise SerializationError(f"a batch download lacked {len(wanted)} of the objects asked for")

    def run(self, jobs: list[Callable[[], None]], max_workers: int) -> None:
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tilde-download") as pool:
            futures: list[Future[None]] = [pool.submit(job) for job in jobs]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:
                self._stop.set()
                for future in pending:
                    future.cancel()
                wait(pending)
                raise failed.exception()  # type: ignore[misc]


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_Found = tuple[str, list[str], int]


def _groups(found: list[_Found], max_files: int) -> tuple[list[list[_Found]], list[_Found]]:
    """Split into groups of small objects (``max_files`` and `DEFAULT_BATCH_BYTES` at most) and the rest."""
    groups: list[list[_Found]] = []
    singles: list[_Found] = []
    current: list[_Found] = []
    current_bytes = 0
    for item in found:
        size = item[2]
        if size >= BATCH_FILE_LIMIT:
            singles.append(item)
            continue
        if current and (len(current) >= max_files or current_bytes + size > DEFAULT_BATCH_BYTES):
            groups.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += size
    if current:
        groups.append(current)
    return groups, singles


def download_folder(
    objects: _ObjectReads,
    prefix: str,
    local_dir: str | os.PathLike[str],
    *,
    progress: TransferProgress | None = None,
    max_workers: int = 8,
) -> FolderTransferResult:
    """Write what is under ``prefix`` into ``local_dir`` (see `ReadOnlyObjects.download`)."""
    if max_workers < 1:
        raise ValueError("max_workers must be >= 1")
    base = folder_prefix(prefix)
    listing = objects.list(prefix=base or None, page_size=_LIST_PAGE)
    found: list[tuple[str, list[str], int]] = []
    for entry in listing:
        if entry.type != "object" or not entry.path.startswith(base):
            continue
        segments = safe_relative(entry.path[len(base) :])
        if segments is None:
            raise ValueError(f"refusing to download object {entry.path!r}: it would land outside the folder")
        size = entry.entry.size if entry.entry is not None and entry.entry.size is not None else 0
        found.append((entry.path, segments, size))
    root = Path(local_dir)
    root.mkdir(parents=True, exist_ok=True)
    serial = _SerialProgress(progress)
    serial.start(total_files=len(found), total_bytes=sum(size for _, _, size in found))
    try:
        downloader = _Downloader(objects, root, serial)
        route = capabilities(objects._client).batch_download if found else None
        groups, singles = _groups(found, route.max_files) if route is not None else ([], found)
        jobs: list[Callable[[], None]] = [
            lambda path=path, segments=segments: downloader.fetch(path, segments)  # type: ignore[misc]
            for path, segments, _ in sorted(singles, key=lambda item: -item[2])
        ]
        if route is not None:
            jobs += [lambda group=group: downloader.fetch_batch(route, group) for group in groups]  # type: ignore[misc]
        downloader.run(jobs, max_workers)
    finally:
        serial.finish()
    return FolderTransferResult(
        files=len(found), bytes=sum(size for _, _, size in found), paths=sorted(path for path, _, _ in found)
    )
