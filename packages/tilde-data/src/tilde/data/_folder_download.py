"""``download(prefix, local_dir)``: list what is under a prefix, then fetch it concurrently into a folder.

Every object streams into a temporary file next to its destination, which is renamed into place once
complete, so an interrupted download never leaves a truncated file under the final name. Object paths that
would land outside the folder (``..`` segments, or a symbolic link inside the folder pointing elsewhere) are
refused before anything is written to them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

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


def _file_mode() -> int:
    """Return the mode a plain ``open()`` gives new files (0666 less the umask), umask untouched."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


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
        self._mode = _file_mode()
        self._root = root
        self._root_real = os.path.realpath(root)
        self._progress = progress
        self._stop = threading.Event()
        self._mkdir_lock = threading.Lock()

    def _place(self, path: str, segments: list[str], write: Callable[[BinaryIO], None]) -> None:
        """Write one file through a temporary file beside it, renamed into place when complete."""
        target = self._root.joinpath(*segments)
        directory = target.parent
        with self._mkdir_lock:
            directory.mkdir(parents=True, exist_ok=True)
        # Checked after the directories exist: a symbolic link among them must not lead out of the folder.
        if _escapes(self._root_real, str(directory)):
            raise ValueError(f"refusing to write object {path!r}: {str(target)!r} lies outside the folder")
        fd, temporary = tempfile.mkstemp(prefix=".tilde-", suffix=".part", dir=directory)
        try:
            # mkstemp makes the file private; the finished file gets the mode a plain open() would give.
            os.fchmod(fd, self._mode)
            with os.fdopen(fd, "wb") as sink:
                write(sink)
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

        def write(sink: BinaryIO) -> None:
            with self._objects.get(path, cache=False) as reader:
                for chunk in reader.iter_bytes(_CHUNK):
                    sink.write(chunk)
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
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:", encoding="utf-8") as archive:
            for member in archive:
                placed = wanted.pop(member.name, None)
                if placed is None or not member.isfile():
                    raise SerializationError(f"unexpected member {member.name!r} in a batch download")
                data = archive.extractfile(member)
                assert data is not None  # a regular file always has contents

                def write(sink: BinaryIO, data: IO[bytes] = data) -> None:
                    shutil.copyfileobj(data, sink)

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
