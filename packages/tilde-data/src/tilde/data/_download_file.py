"""``download_file(path, local_path)``: one object into one local file, in parallel ranged GETs.

The object's size and ETag come from one ``HEAD``. The bytes land in a temporary file beside the destination
(``<name>.tilde-download``), preallocated to the object's size, each range written at its offset by its own
worker as it arrives, so no more than about a MiB per worker is in memory. Where the filesystem allows it the
writes go around the page cache (``O_DIRECT``): each worker gathers its chunks into a page-aligned block and
writes whole blocks, the file's unaligned last bytes alone going through the page cache. Writing a new file
through the page cache first touches fresh memory, which on virtual machines is several times slower than
writing the same bytes to the disk directly.
When every range is in, the file is renamed over the destination: an interrupted download never leaves a
truncated file under the final name.

Resuming, at two levels. A connection that drops in the middle of a range is picked up at the first byte not
received (`ObjectReader` does it: one ranged GET from there). And the ranges already complete are recorded in
a small state file beside the temporary one (``<name>.tilde-download.json``: ETag, size, range size, ranges
done), so a later call - after a crash, a ``kill -9``, a network outage longer than the retries - fetches only
the ranges still missing, provided the object's ETag and size did not change (otherwise it starts over).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import mmap
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING

from tilde.data.object_reader import ObjectChangedError
from tilde.data.transfers import TransferProgress, _SerialProgress

if TYPE_CHECKING:
    from tilde.data.objects import _ObjectReads

__all__ = ["DEFAULT_RANGE_SIZE", "DEFAULT_WORKERS", "download_file"]

#: Ranged GETs in flight by default: on a 2-core machine against a local server, 2 to 4 ran at the speed of
#: one stream and 8 at half of it (the server's event loop is the limit), so more would only cost memory.
DEFAULT_WORKERS = 4
#: Most bytes per ranged GET (the unit of parallelism, and of resuming across calls).
DEFAULT_RANGE_SIZE = 32 * 1024 * 1024
#: Fewest bytes per ranged GET: smaller objects are split in fewer ranges than there are workers.
MIN_RANGE_SIZE = 4 * 1024 * 1024
_CHUNK = 1024 * 1024
#: ``O_DIRECT`` offsets, lengths and buffers are multiples of this (a page covers every block size in use).
_ALIGN = 4096
#: Bytes a worker gathers before one direct write.
_BLOCK = 1024 * 1024
_TEMP_SUFFIX = ".tilde-download"
_STATE_SUFFIX = ".tilde-download.json"

logger = logging.getLogger("tilde.data.download")


class _State:
    """Which ranges of the temporary file hold their bytes, kept on disk after each one completes."""

    def __init__(self, path: Path, etag: str, size: int, range_size: int) -> None:
        self.path = path
        self.etag = etag
        self.size = size
        self.range_size = range_size
        self.done: set[int] = set()
        self._lock = threading.Lock()

    def load(self, temporary: Path) -> None:
        """Take over the ranges (and their size) a previous call completed, when of this very object."""
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            range_size = int(saved["range_size"])
            done = {int(index) for index in saved["done"]}
            same = (saved["etag"], saved["size"]) == (self.etag, self.size)
            if same and range_size > 0 and temporary.stat().st_size == self.size:
                self.range_size, self.done = range_size, done
        except (OSError, ValueError, KeyError, TypeError):
            self.done = set()

    def mark(self, index: int) -> None:
        """Record range ``index`` as complete (written through a temporary file, renamed into place)."""
        with self._lock:
            self.done.add(index)
            body = {
                "etag": self.etag,
                "size": self.size,
                "range_size": self.range_size,
                "done": sorted(self.done),
            }
            staging = self.path.with_name(self.path.name + ".new")
            staging.write_text(json.dumps(body), encoding="utf-8")
            os.replace(staging, self.path)


def download_file(
    objects: _ObjectReads,
    path: str,
    local_path: str | os.PathLike[str],
    *,
    max_workers: int = DEFAULT_WORKERS,
    range_size: int | None = None,
    progress: TransferProgress | None = None,
) -> int:
    """Write one object to ``local_path`` (see `ReadOnlyObjects.download_file`); return its size."""
    serial = _SerialProgress(progress)
    try:
        return _download_file(objects, path, local_path, max_workers, range_size, serial)
    finally:
        serial.finish()


def _download_file(
    objects: _ObjectReads,
    path: str,
    local_path: str | os.PathLike[str],
    max_workers: int,
    range_size: int | None,
    progress: _SerialProgress,
) -> int:
    if max_workers < 1:
        raise ValueError("max_workers must be >= 1")
    if range_size is not None and range_size < 1:
        raise ValueError("range_size must be >= 1")
    target = Path(local_path)
    if target.is_dir():
        target = target / path.rsplit("/", 1)[-1]
    temporary = target.with_name(target.name + _TEMP_SUFFIX)
    head = objects.head(path)
    etag, size = head.etag or "", head.content_length
    progress.start(total_files=1, total_bytes=size)
    if size is None:
        # No size, no ranges: one streamed GET.
        size = _stream_whole(objects, path, temporary, progress)
        os.replace(temporary, target)
        progress.advance(files=1)
        return size
    if range_size is None:
        # Enough ranges to keep every worker busy, each of MIN_RANGE_SIZE to DEFAULT_RANGE_SIZE bytes.
        range_size = min(DEFAULT_RANGE_SIZE, max(MIN_RANGE_SIZE, -(-size // max_workers)))
    state = _State(target.with_name(target.name + _STATE_SUFFIX), etag, size, range_size)
    if etag:
        state.load(temporary)
    range_size = state.range_size
    if state.done:
        logger.info(
            "downloading %s to %s: resuming, %d of %d ranges already there",
            path,
            target,
            len(state.done),
            -(-size // range_size),
        )
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o666)
    direct_fd = -1
    try:
        if not state.done:
            os.ftruncate(fd, 0)
            _preallocate(fd, size)
        ranges = [
            (index, start, min(start + range_size, size) - 1)
            for index, start in enumerate(range(0, size, range_size))
            if index not in state.done
        ]
        if state.done:
            progress.advance(bytes=sum(min(range_size, size - index * range_size) for index in state.done))
        direct_fd = _open_direct(temporary)
        sink = _Sink(fd, direct_fd)
        _fetch_ranges(objects, path, sink, etag, ranges, state, max_workers, progress)
    finally:
        if direct_fd >= 0:
            os.close(direct_fd)
        os.close(fd)
    os.replace(temporary, target)
    with contextlib.suppress(OSError):
        state.path.unlink()
    progress.advance(files=1)
    return size


_seek_lock = threading.Lock()


def _pwrite(fd: int, data: memoryview, offset: int) -> int:
    """Write at ``offset`` (``os.pwrite``; where there is none, a seek and a write under a lock)."""
    pwrite = getattr(os, "pwrite", None)
    if pwrite is not None:
        written: int = pwrite(fd, data, offset)
        return written
    with _seek_lock:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, data)


def _open_direct(path: Path) -> int:
    """Open ``path`` for writes around the page cache; -1 where ``O_DIRECT`` is unknown or refused."""
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return -1
    try:
        return os.open(path, os.O_WRONLY | direct)
    except OSError:
        return -1


class _Sink:
    """The temporary file, written at offsets: whole aligned blocks around the page cache when possible."""

    def __init__(self, fd: int, direct_fd: int) -> None:
        self.fd = fd
        self.direct_fd = direct_fd

    def write(self, data: memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``, through the page cache."""
        while data:
            written = _pwrite(self.fd, data, offset)
            data = data[written:]
            offset += written

    def write_block(self, block: memoryview, offset: int) -> None:
        """Write all of ``block`` at ``offset``: its whole pages directly when possible, the rest buffered.

        ``block`` must live in page-aligned memory and ``offset`` be page-aligned for the direct write.
        """
        aligned = len(block) // _ALIGN * _ALIGN if self.direct_fd >= 0 and offset % _ALIGN == 0 else 0
        done = 0
        try:
            while done < aligned:
                done += os.pwrite(self.direct_fd, block[done:aligned], offset + done)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            self.direct_fd = -1  # refused after all: the rest of the download goes through the page cache
        self.write(block[done:], offset + done)


def _preallocate(fd: int, size: int) -> None:
    """Reserve the file's blocks up front (no fragmentation, and a full disk fails now, not half-way)."""
    if size == 0:
        return
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is not None:
        try:
            allocate(fd, 0, size)
            return
        except OSError:
            pass  # not supported by this file system: a sparse file of the right size does
    os.ftruncate(fd, size)


def _fetch_ranges(
    objects: _ObjectReads,
    path: str,
    sink: _Sink,
    etag: str,
    ranges: list[tuple[int, int, int]],
    state: _State,
    max_workers: int,
    progress: _SerialProgress,
) -> None:
    stop = threading.Event()

    def fetch(index: int, start: int, end: int) -> None:
        if stop.is_set():
            return
        offset = start
        # Bytes gather here (page-aligned, as O_DIRECT needs) until a block is full, unless writes are plain;
        # the bytes before the range's first page boundary go through the page cache.
        block = mmap.mmap(-1, _BLOCK) if sink.direct_fd >= 0 else None
        stage = memoryview(block) if block is not None else None
        filled = 0
        head = -start % _ALIGN
        with objects.get(path, cache=False, byte_range=(start, end)) as reader:
            if etag and reader.etag and reader.etag != etag:
                raise ObjectChangedError(
                    f"object {path!r} changed during the download (ETag {etag} became {reader.etag})"
                )
            while not stop.is_set():
                chunk = reader.read1(_CHUNK)
                if not chunk:
                    break
                view = memoryview(chunk)
                if stage is None or head:
                    plain = view if stage is None else view[:head]
                    sink.write(plain, offset)
                    offset += len(plain)
                    head -= min(head, len(plain))
                    view = view[len(plain) :]
                while stage is not None and view:
                    count = min(len(view), _BLOCK - filled)
                    stage[filled : filled + count] = view[:count]
                    filled += count
                    view = view[count:]
                    if filled == _BLOCK:
                        sink.write_block(stage, offset)
                        offset += filled
                        filled = 0
                progress.advance(bytes=len(chunk))
        if stage is not None and filled and not stop.is_set():
            sink.write_block(stage[:filled], offset)
            offset += filled
        if stop.is_set():
            return
        if offset != end + 1:
            raise OSError(f"range {start}-{end} of {path!r} ended at byte {offset}")
        if etag:
            state.mark(index)

    if not ranges:
        return
    workers = min(max_workers, len(ranges))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tilde-download") as pool:
        futures: list[Future[None]] = [pool.submit(fetch, *item) for item in ranges]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((future for future in done if future.exception() is not None), None)
        if failed is not None:
            stop.set()
            for future in pending:
                future.cancel()
            wait(pending)
            raise failed.exception()  # type: ignore[misc]


def _stream_whole(objects: _ObjectReads, path: str, temporary: Path, progress: _SerialProgress) -> int:
    total = 0
    with objects.get(path, cache=False) as reader, temporary.open("wb") as sink:
        while chunk := reader.read1(_CHUNK):
            sink.write(chunk)
            total += len(chunk)
            progress.advance(bytes=len(chunk))
    return total
