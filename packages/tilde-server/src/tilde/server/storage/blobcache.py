"""A node-local, size-bounded, content-addressed cache of blob files (for a blob store that is not local).

Sandboxes need blobs as local files: their lower layer is a tree of hard links to blob files. With blobs on
S3, each node keeps the blobs it used recently under ``root/<ab>/<sha256>``. A file enters the cache
complete and verified (fetched into a temporary file, its SHA-256 checked, then renamed), so a reader never
sees a torn or foreign file.

Eviction is least-recently-used (every hand-out refreshes the file's modification time) and never touches a
blob in use: one hard-linked into a sandbox tree (link count above one), or handed out within the last
``pin_seconds`` (the caller may be about to link or read it). When everything is in use the cache stays over
its capacity until something is released; it never deletes a file someone relies on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tilde.server._private import DIR_MODE, FILE_MODE, private_dir
from tilde.server.storage.errors import InvalidArgument

__all__ = ["BlobCache", "CorruptBlob"]

logger = logging.getLogger("tilde.server.storage")

_HEX = frozenset("0123456789abcdef")
#: Default capacity: 10 GiB.
DEFAULT_CAPACITY = 10 * 1024**3


class CorruptBlob(Exception):
    """Fetched bytes did not hash to the blob's key (or had the wrong size)."""


class _HashingFile:
    """A write-only file object that hashes and counts what goes through it."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._file.write(data)
        return len(data)


class BlobCache:
    """Blob files on local disk, bounded to ``capacity`` bytes (thread-safe).

    Args:
        root: Directory of the cache; created when missing. Put it on the same filesystem as the sandboxes'
            layers so their trees can hard-link from it.
        capacity: Bytes kept before least-recently-used files are evicted.
        pin_seconds: A file handed out this recently is never evicted.

    """

    def __init__(self, root: Path, capacity: int = DEFAULT_CAPACITY, *, pin_seconds: float = 600.0) -> None:
        self.root = Path(root)
        self.capacity = capacity
        self.pin_seconds = pin_seconds
        self.tmp_dir = self.root / "tmp"
        private_dir(self.root)
        private_dir(self.tmp_dir)
        for leftover in self.tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}
        self._size = sum(size for _, size, _, _ in self._files())

    @property
    def size(self) -> int:
        """Bytes currently held (an estimate between evictions)."""
        return self._size

    def path_for(self, key: str) -> Path:
        """Where the blob ``key`` lives in the cache (whether or not it is there).

        Raises:
            InvalidArgument: When the key is not a SHA-256 hex digest.

        """
        if len(key) != 64 or not _HEX.issuperset(key):
            raise InvalidArgument(f"not a blob key: {key!r}")
        return self.root / key[:2] / key

    def lookup(self, key: str) -> Path | None:
        """Return the cached file of ``key`` (marking it used), or None when it is not cached."""
        path = self.path_for(key)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def get(self, key: str, size: int, fetch: Callable[[BinaryIO], None]) -> Path:
        """Return the cached file of ``key``, fetching it first when missing (once for all waiting callers).

        Args:
            key: The blob's SHA-256 hex digest.
            size: Its size in bytes.
            fetch: Writes the blob's bytes to the file object it is given.

        Raises:
            CorruptBlob: When the fetched bytes do not match ``key`` and ``size``.

        """
        found = self.lookup(key)
        if found is not None:
            return found
        with self._lock:
            gate = self._fetching.setdefault(key, threading.Lock())
        with gate:
            found = self.lookup(key)
            if found is not None:
                return found
            try:
                return self._fill(key, size, fetch)
            finally:
                with self._lock:
                    self._fetching.pop(key, None)

    def _fill(self, key: str, size: int, fetch: Callable[[BinaryIO], None]) -> Path:
        fd, name = tempfile.mkstemp(prefix="f-", suffix=".tmp", dir=self.tmp_dir)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as file:
                sink = _HashingFile(file)
                fetch(sink)  # type: ignore[arg-type]
            if sink.size != size or sink.hash.hexdigest() != key:
                raise CorruptBlob(
                    f"fetched bytes of blob {key} hash to {sink.hash.hexdigest()} ({sink.size} B)"
                )
            return self.adopt(key, tmp, size)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def adopt(self, key: str, file: Path, size: int, *, pin: bool = True) -> Path:
        """Move a complete local file whose SHA-256 is ``key`` into the cache (dropped when cached already).

        Args:
            key: The file's SHA-256 hex digest (the caller has verified it).
            file: The file, on the cache's filesystem; it is gone from that path afterwards.
            size: Its size.
            pin: Whether the caller is about to use the file (it is then kept ``pin_seconds``); an unpinned
                file (a blob the server just wrote, cached in case it is read) is the first to go.

        Returns:
            The cached file.

        """
        target = self.path_for(key)
        if self.lookup(key) is not None:
            file.unlink()
            return target
        target.parent.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(file, FILE_MODE)
        if not pin:
            unpinned = time.time() - self.pin_seconds - 1
            os.utime(file, (unpinned, unpinned))
        os.replace(file, target)
        with self._lock:
            self._size += size
        self.evict()
        return target

    def tmp_file(self) -> tuple[int, Path]:
        """Create a temporary file on the cache's filesystem: ``(fd, path)`` (for ``adopt`` later)."""
        fd, name = tempfile.mkstemp(prefix="w-", suffix=".tmp", dir=self.tmp_dir)
        return fd, Path(name)

    def _files(self) -> list[tuple[float, int, int, Path]]:
        """``(mtime, size, links, path)`` of every cached file."""
        found: list[tuple[float, int, int, Path]] = []
        for first in self.root.iterdir():
            if first == self.tmp_dir or not first.is_dir():
                continue
            for entry in first.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    info = entry.lstat()
                    if stat.S_ISREG(info.st_mode):
                        found.append((info.st_mtime, info.st_size, info.st_nlink, entry))
        return found

    def evict(self) -> int:
        """Delete least-recently-used files not in use until the cache fits its capacity.

        Returns:
            How many bytes were freed.

        """
        if self._size <= self.capacity:
            return 0
        with self._lock:
            files = sorted(self._files())
            total = sum(size for _, size, _, _ in files)
            pinned_after = time.time() - self.pin_seconds
            freed = 0
            for mtime, size, links, path in files:
                if total - freed <= self.capacity:
                    break
                if links > 1 or mtime >= pinned_after:
                    continue  # linked into a sandbox tree, or just handed out
                with contextlib.suppress(FileNotFoundError):
                    now = path.lstat()  # handed out or linked since the scan: keep it
                    if now.st_nlink > 1 or now.st_mtime != mtime:
                        continue
                    path.unlink()
                    freed += size
            self._size = total - freed
        if freed:
            logger.debug("blob cache evicted %d bytes", freed)
        return freed
