"""``SessionObjects.upload_folder``: find the files, batch the small ones, upload everything concurrently.

Small files go in batches through a batch strategy (`tilde.data.batch_uploads`) when the server has one, so
thousands of them cost a handful of requests; large files, and every file on servers without batches, go
through ``put`` (streamed from disk, multipart above the client's threshold). Memory stays bounded: a batch
holds at most its byte limit, a large file at most the multipart parts in flight, times the workers.
"""

from __future__ import annotations

import fnmatch
import io
import os
import stat
import threading
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tilde.data.batch_uploads import (
    BatchUploadItem,
    BatchUploadRequest,
    BatchUploadStrategy,
    batch_upload_strategies,
)
from tilde.data.transfers import FolderTransferResult, TransferProgress, _SerialProgress
from tilde.data.upload_strategies import StrategyDeclined

if TYPE_CHECKING:
    from tilde.data.objects import SessionObjects

__all__ = ["LocalFile", "folder_prefix", "scan_folder", "upload_folder"]


@dataclass(frozen=True)
class LocalFile:
    """A file found in the folder.

    Attributes:
        relative: Its path relative to the folder, with ``/`` separators.
        source: The file to read (a symbolic link's target inside the folder).
        size: Its size in bytes.

    """

    relative: str
    source: Path
    size: int


def folder_prefix(prefix: str) -> str:
    """Return ``prefix`` as a folder: empty, or ending with exactly one ``/``."""
    stripped = prefix.strip("/")
    return stripped + "/" if stripped else ""


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def scan_folder(
    root: Path, *, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
) -> Iterator[LocalFile]:
    """Yield the regular files under ``root`` in path order, filtered by the globs.

    Symbolic links to directories are not descended into; a symbolic link to a file is taken (with the
    target's bytes) only when the target lies inside ``root``. Other special files are skipped.

    Relative paths are in Unicode NFC (precomposed), whatever form the file system lists names in, like git's
    ``core.precomposeUnicode``: the server stores paths byte-exact, and a file system that hands back
    decomposed names (macOS) would otherwise give ``café.txt`` an object path no one types. The globs match
    the NFC form.

    Args:
        root: The folder.
        include: Take only files whose relative POSIX path matches one of these `fnmatch` patterns.
        exclude: Skip files whose relative POSIX path matches one of these.

    Raises:
        ValueError: A file name is not valid UTF-8 (it could not name an object), or two names differ only
            in their Unicode normalisation form (they would name one object).

    """
    root_real = os.path.realpath(root)
    seen: dict[str, str] = {}
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(directory, name)
            relative = os.path.relpath(full, root).replace(os.sep, "/")
            relative = unicodedata.normalize("NFC", relative)
            if include is not None and not _matches(relative, include):
                continue
            if exclude and _matches(relative, exclude):
                continue
            try:
                info = os.lstat(full)
                source = full
                if stat.S_ISLNK(info.st_mode):
                    source = os.path.realpath(full)
                    if not _inside(source, root_real):
                        continue
                    info = os.stat(source)
            except OSError:
                continue  # vanished, or a dangling link
            if not stat.S_ISREG(info.st_mode):
                continue
            try:
                relative.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"cannot upload {full!r}: its name is not valid UTF-8") from None
            if relative in seen:
                raise ValueError(
                    f"cannot upload both {seen[relative]!r} and {full!r}: both name {relative!r}"
                )
            seen[relative] = full
            yield LocalFile(relative, Path(source), info.st_size)


class _CountingFile(io.FileIO):
    """A file that reports each byte read for the first time to the progress (rewinds are not recounted)."""

    def __init__(self, path: Path, progress: _SerialProgress) -> None:
        super().__init__(path, "rb")
        self._progress = progress
        self._high = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        position = self.tell()
        if position > self._high:
            self._progress.advance(bytes=position - self._high)
            self._high = position
        return data


class _Uploader:
    """One folder upload's jobs, run on a bounded thread pool."""

    def __init__(self, objects: SessionObjects, progress: _SerialProgress) -> None:
        self._objects = objects
        self._progress = progress
        self._stop = threading.Event()

    def put_file(self, path: str, file: LocalFile) -> None:
        if self._stop.is_set():
            return
        with _CountingFile(file.source, self._progress) as handle:
            self._objects.put(path, handle)
        self._progress.advance(files=1)

    def put_batch(self, strategies: list[BatchUploadStrategy], batch: BatchUploadRequest) -> None:
        if self._stop.is_set():
            return
        strategy = next((s for s in strategies if s.accepts_batch(batch)), None)
        if strategy is not None:
            try:
                strategy.upload_batch(batch)
            except StrategyDeclined:
                pass
            else:
                self._progress.advance(files=len(batch.items), bytes=batch.size)
                return
        for item in batch.items:
            self.put_file(item.path, LocalFile(item.path, item.source, item.size))

    def run(self, jobs: list[Callable[[], None]], max_workers: int) -> None:
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tilde-upload") as pool:
            futures: list[Future[None]] = [pool.submit(job) for job in jobs]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:
                self._stop.set()
                for future in pending:
                    future.cancel()
                wait(pending)
                raise failed.exception()  # type: ignore[misc]


#: Fewest files worth a batch of their own when spreading a folder over the workers.
MIN_BATCH_FILES = 50


def _batches(
    files: list[tuple[str, LocalFile]], limits: tuple[int, int, int], workers: int
) -> tuple[list[list[tuple[str, LocalFile]]], list[tuple[str, LocalFile]]]:
    """Split into batches of small files within ``limits`` and the list of files too large for a batch.

    Batches are also made small enough to keep every worker busy: the server stores each batch's files one
    after the other, so a few large batches would leave both the workers and the server's threads idle.
    """
    max_files, max_file_bytes, max_batch_bytes = limits
    small = sum(1 for _, file in files if file.size < max_file_bytes and file.size <= max_batch_bytes)
    max_files = min(max_files, max(MIN_BATCH_FILES, -(-small // workers)))
    batches: list[list[tuple[str, LocalFile]]] = []
    singles: list[tuple[str, LocalFile]] = []
    current: list[tuple[str, LocalFile]] = []
    current_bytes = 0
    for path, file in files:
        if file.size >= max_file_bytes or file.size > max_batch_bytes:
            singles.append((path, file))
            continue
        if current and (len(current) >= max_files or current_bytes + file.size > max_batch_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append((path, file))
        current_bytes += file.size
    if current:
        batches.append(current)
    return batches, singles


def upload_folder(
    objects: SessionObjects,
    session_id: str,
    local_dir: str | os.PathLike[str],
    prefix: str = "",
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    progress: TransferProgress | None = None,
    max_workers: int = 8,
) -> FolderTransferResult:
    """Upload the contents of ``local_dir`` under ``prefix`` (see `SessionObjects.upload_folder`)."""
    if max_workers < 1:
        raise ValueError("max_workers must be >= 1")
    root = Path(local_dir)
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {str(root)!r}")
    base = folder_prefix(prefix)
    files = [(base + found.relative, found) for found in scan_folder(root, include=include, exclude=exclude)]
    serial = _SerialProgress(progress)
    serial.start(total_files=len(files), total_bytes=sum(file.size for _, file in files))
    try:
        client = objects._client
        strategies = batch_upload_strategies(client) if files else []
        limits = next((found for s in strategies if (found := s.limits(client)) is not None), None)
        batches, singles = _batches(files, limits, max_workers) if limits is not None else ([], files)
        uploader = _Uploader(objects, serial)
        jobs: list[Callable[[], None]] = []
        # Large files first: they take longest, and the batches fill the remaining workers around them.
        for path, file in sorted(singles, key=lambda pair: -pair[1].size):
            jobs.append(lambda path=path, file=file: uploader.put_file(path, file))  # type: ignore[misc]
        for group in batches:
            items = [BatchUploadItem(path, file.source, file.size) for path, file in group]
            request = BatchUploadRequest(client, objects._org, objects._repo, session_id, items)
            jobs.append(lambda request=request: uploader.put_batch(strategies, request))  # type: ignore[misc]
        uploader.run(jobs, max_workers)
    finally:
        serial.finish()
    return FolderTransferResult(
        files=len(files), bytes=sum(file.size for _, file in files), paths=sorted(path for path, _ in files)
    )
