"""Blob storage: the ``BlobStore`` interface and ``LocalBlobStore`` (content-addressed files on local disk).

Bytes are addressed by their SHA-256. A writer streams into a temporary file inside the store (same
filesystem), fsyncs it and renames it into place, so a crash can leave stray temporary files but never a
torn blob.

``LocalBlobStore`` also keeps *upload files* (``UploadFileStore``): one sparse temporary file per in-place
multipart upload, written part by part at fixed offsets and finally hashed and renamed into place as a blob,
so the parts' bytes are written once instead of once per part and once more for their concatenation.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol, TypeVar, runtime_checkable

from tilde.server._private import DIR_MODE, FILE_MODE, private_dir
from tilde.server.storage._directio import pwrite_chunks, sha256_update
from tilde.server.storage._prefixhash import PrefixHashes
from tilde.server.storage.errors import InvalidArgument, NotFound
from tilde.server.storage.types import BlobRef

__all__ = [
    "BlobStore",
    "BlobWriter",
    "LocalBlobStore",
    "LocalBlobWriter",
    "TempFileBlobWriter",
    "UploadFile",
    "UploadFileStore",
]

# Large reads keep hashlib (which drops the GIL) busy and syscall overhead negligible.
_CHUNK = 8 * 1024 * 1024
_FILE_MODE = FILE_MODE  # private to the server's user (sandboxes read them as that user)
_HEX = frozenset("0123456789abcdef")
#: Threads fsyncing the blobs of one batch at once.
_FSYNC_THREADS = 16
# Upload files live among the temporary files, so the stale-file sweep also removes abandoned ones.
_UPLOAD_PREFIX = "u-"
_UPLOAD_SUFFIX = ".tmp"
_UPLOAD_ID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_")

logger = logging.getLogger("tilde.server.storage")


@runtime_checkable
class BlobWriter(Protocol):
    """A stream of bytes on its way into a blob store."""

    @property
    def size(self) -> int:
        """Bytes written so far."""
        ...

    def write(self, data: bytes) -> None:
        """Append bytes."""
        ...

    def commit(self) -> BlobRef:
        """Make the bytes durable and addressable; returns the reference."""
        ...

    def abort(self) -> None:
        """Discard everything written; idempotent."""
        ...

    def __enter__(self) -> BlobWriter: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class BlobStore(Protocol):
    """Where object bytes live. Blobs are immutable once committed."""

    def open_writer(self) -> BlobWriter:
        """Start writing a new blob."""
        ...

    def ingest_file(self, path: Path) -> BlobRef:
        """Hash a finished file and move (or copy) it into the store."""
        ...

    def concat(self, parts: Sequence[BlobRef]) -> BlobRef:
        """Store the concatenation of existing blobs as a new blob."""
        ...

    def path(self, blob: BlobRef) -> Path:
        """Return the local file holding the blob's bytes (do not modify it)."""
        ...

    def exists(self, blob: BlobRef) -> bool:
        """Whether the blob's bytes are present."""
        ...

    def unreferenced(self, referenced: Set[str], older_than: float) -> Iterator[BlobRef]:
        """Iterate stored blobs outside ``referenced`` last written before ``older_than``."""
        ...

    def delete(self, blob: BlobRef, older_than: float) -> bool:
        """Delete a blob if it was still last written before ``older_than``."""
        ...


class UploadFile(Protocol):
    """One open handle on an upload file, for writing part bytes at their offsets."""

    def write_at(self, offset: int, data: bytes) -> None:
        """Write all of ``data`` at ``offset``."""
        ...

    def sync(self) -> None:
        """Make the bytes written so far durable."""
        ...

    def close(self) -> None:
        """Release the handle; idempotent."""
        ...


@runtime_checkable
class UploadFileStore(Protocol):
    """A blob store that can assemble a multipart upload in place in one file (optional capability)."""

    def create_upload_file(self, upload_id: str) -> None:
        """Create the empty upload file of an upload."""
        ...

    def open_upload_file(self, upload_id: str) -> UploadFile:
        """Open an upload file for writing parts."""
        ...

    def install_upload_file(
        self,
        upload_id: str,
        size: int,
        *,
        part_size: int | None = None,
        part_digests: Callable[[], Sequence[str]] | None = None,
    ) -> BlobRef:
        """Cut the upload file to ``size`` bytes, hash it and move it into the store as a blob.

        ``part_digests`` reads the digests of parts 1..N as recorded now; a store that hashed a prefix of
        the file while the parts arrived may start from it for the parts it confirms.
        """
        ...

    def discard_upload_file(self, upload_id: str) -> None:
        """Delete an upload file (a no-op when it is gone)."""
        ...

    def upload_file_ids(self, older_than: float) -> list[str]:
        """Return the uploads whose file was last written before ``older_than``."""
        ...


def _fsync_dir(directory: Path) -> None:
    """Persist a directory entry change (rename) across a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_Writer = TypeVar("_Writer", bound="TempFileBlobWriter")


class TempFileBlobWriter:
    """Writes one blob into a local temporary file while hashing it; ``commit`` hands it to ``_finish``.

    The shared half of the blob stores' writers: subclasses decide where the finished file goes.

    Args:
        fd: An open, writable descriptor of the temporary file (owned by the writer from now on).
        tmp_path: The temporary file's path (removed when the writer is aborted or its commit fails).

    """

    def __init__(self, fd: int, tmp_path: Path) -> None:
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._tmp_path = tmp_path
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False
        self._ref: BlobRef | None = None

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def write(self, data: bytes) -> None:
        """Append bytes to the blob.

        Args:
            data: The bytes to append.

        Raises:
            InvalidArgument: When the writer was already committed or aborted.

        """
        if self._done:
            raise InvalidArgument("blob writer is closed")
        self._hash.update(data)
        self._size += pwrite_chunks(self._file.fileno(), [data], self._size)

    def write_many(self, chunks: Sequence[bytes]) -> None:
        """Append several chunks, in order, with vectored writes (no joined copy of them is made).

        Args:
            chunks: The bytes to append.

        Raises:
            InvalidArgument: When the writer was already committed or aborted.

        """
        if self._done:
            raise InvalidArgument("blob writer is closed")
        for chunk in chunks:
            self._hash.update(chunk)
        self._size += pwrite_chunks(self._file.fileno(), chunks, self._size)

    def commit(self) -> BlobRef:
        """Store the bytes at their content address.

        Returns:
            The reference of the stored blob (the existing one when identical bytes were already stored).

        Raises:
            InvalidArgument: When the writer was aborted.

        """
        if self._ref is not None:
            return self._ref
        if self._done:
            raise InvalidArgument("blob writer was aborted")
        self._done = True
        try:
            self._ref = self._finish(self._hash.hexdigest())
        except BaseException:
            self._discard()
            raise
        return self._ref

    def _finish(self, digest: str) -> BlobRef:
        """Close the temporary file and store it under ``digest``; return its reference."""
        raise NotImplementedError

    def abort(self) -> None:
        """Discard the bytes; safe to call more than once and after ``commit``."""
        if self._done:
            return
        self._done = True
        self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp_path.unlink()

    def __enter__(self: _Writer) -> _Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


class LocalBlobWriter(TempFileBlobWriter):
    """Writes one blob into a temporary file of a ``LocalBlobStore``; use ``LocalBlobStore.open_writer``."""

    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(prefix="w-", suffix=".tmp", dir=store.tmp_dir)
        super().__init__(fd, Path(name))

    def _finish(self, digest: str) -> BlobRef:
        """Fsync the bytes and rename them into their content-addressed place."""
        self._file.flush()
        os.fchmod(self._file.fileno(), _FILE_MODE)
        os.fsync(self._file.fileno())
        self._file.close()
        return self._store._install(self._tmp_path, digest, self._size)


class LocalUploadFile:
    """A handle on an upload file of a ``LocalBlobStore``; use ``LocalBlobStore.open_upload_file``.

    Each write holds a shared ``flock`` on the file and first checks that the file is still the upload's
    (not yet installed as a blob nor deleted); installing holds the exclusive lock. So no write, from any
    thread or process sharing the store, can land while the file is hashed or after it became an immutable
    blob, while writes of different parts still run concurrently.
    """

    def __init__(self, path: Path, upload_id: str = "", prefixes: PrefixHashes | None = None) -> None:
        self._path = path
        self._upload_id = upload_id
        self._prefixes = prefixes
        try:
            self._fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            raise NotFound(f"upload file '{path.name}'") from None
        self._inode = os.fstat(self._fd).st_ino

    def write_at(self, offset: int, data: bytes) -> None:
        """Write all of ``data`` at ``offset``.

        Raises:
            NotFound: The upload was completed or aborted since the file was opened.

        """
        self._locked_write(lambda: pwrite_chunks(self._fd, [data], offset))

    def _locked_write(self, write: Callable[[], int]) -> None:
        """Run ``write`` under the shared lock, once the file is known to be still the upload's."""
        if self._fd < 0:
            raise InvalidArgument("upload file is closed")
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            try:
                current = os.stat(self._path).st_ino
            except FileNotFoundError:
                current = -1
            if current != self._inode:
                raise NotFound(f"upload file '{self._path.name}'")
            write()
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def write_many_at(self, offset: int, chunks: Sequence[bytes]) -> None:
        """Write ``chunks`` one after the other from ``offset``: ``os.pwritev``, one lock and check per call.

        Raises:
            NotFound: The upload was completed or aborted since the file was opened.

        """
        self._locked_write(lambda: pwrite_chunks(self._fd, chunks, offset))

    def part_claimed(self, part_number: int, part_size: int, writer: int) -> None:
        """Note that ``writer`` is about to write part ``part_number`` (a hashed prefix must not cover it)."""
        if self._prefixes is not None:
            self._prefixes.claimed(self._upload_id, part_size, part_number, writer)

    def part_written(self, part_number: int, writer: int, size: int) -> None:
        """Note that ``writer`` has written the first ``size`` bytes of part ``part_number``.

        The store hashes the file's prefix of written bytes meanwhile, so completing has less left to hash.
        """
        if self._prefixes is not None:
            self._prefixes.written(self._upload_id, part_number, writer, size)

    def part_recorded(self, part_number: int, writer: int, part_size: int, size: int, digest: str) -> None:
        """Note that ``writer`` recorded part ``part_number``: ``size`` bytes with SHA-256 ``digest``."""
        if self._prefixes is not None:
            self._prefixes.arrived(self._upload_id, part_size, part_number, writer, size, digest)

    def sync(self) -> None:
        """Make the bytes written so far durable (data only: the file's name does not matter yet)."""
        os.fdatasync(self._fd)

    def close(self) -> None:
        """Close the handle; idempotent."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class LocalBlobStore:
    """Content-addressed blobs under ``root``: ``root/ab/cd/<sha256>``, temporary files in ``root/tmp``.

    Opening the store sweeps the temporary files a crashed (``kill -9``) process left behind: blob writes,
    concatenations, request spools and upload files of uploads that no longer exist. When no other process has
    the store open (each holds a shared ``flock`` on ``tmp`` itself while open), every such file goes at once;
    otherwise only those untouched for ``stale_after`` seconds, as another process may still be writing them.
    Upload files of ``live_uploads`` are never touched: those uploads can still be completed.

    Args:
        root: Directory of the store; created when missing.
        stale_after: Age in seconds after which leftover temporary files are deleted when the store opens
            while another process shares it.
        live_uploads: Ids of the in-place uploads that still exist (from the metadata store).

    """

    def __init__(
        self, root: Path, *, stale_after: float = 86_400.0, live_uploads: Set[str] = frozenset()
    ) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        private_dir(self.root)
        private_dir(self.tmp_dir)
        self._lock_fd = os.open(self.tmp_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        #: How many leftover temporary files opening the store deleted.
        self.swept = self._sweep(stale_after, live_uploads)
        #: SHA-256 prefixes of in-place uploads, hashed while their parts arrive.
        self.prefixes = PrefixHashes(self._open_upload_for_reading)

    def _sweep(self, stale_after: float, live_uploads: Set[str]) -> int:
        """Delete temporary files left by crashed writers; return how many.

        Ends holding the shared lock that tells later openers this process uses the store.
        """
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        try:
            cutoff = time.time() - stale_after
            keep = {f"{_UPLOAD_PREFIX}{upload_id}{_UPLOAD_SUFFIX}" for upload_id in live_uploads}
            swept = 0
            for entry in self.tmp_dir.iterdir():
                if entry.name in keep:
                    continue
                with contextlib.suppress(OSError):
                    info = entry.lstat()
                    if stat.S_ISREG(info.st_mode) and (alone or info.st_mtime < cutoff):
                        entry.unlink()
                        swept += 1
        finally:
            # Downgrading is not atomic, but a process opening meanwhile only sees the store as shared.
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        if swept:
            # A warning: only a process that did not stop cleanly (killed, crashed) leaves these behind.
            logger.warning("swept %d orphaned temporary files from %s", swept, self.tmp_dir)
        return swept

    def close(self) -> None:
        """Release the store's shared lock (the files stay); idempotent."""
        self.prefixes.close()
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)

    def open_writer(self) -> LocalBlobWriter:
        """Start writing a new blob.

        Returns:
            A writer; use it as a context manager so it is aborted unless committed.

        """
        return LocalBlobWriter(self)

    def path(self, blob: BlobRef) -> Path:
        """Return the file holding a blob's bytes.

        Args:
            blob: The blob.

        Returns:
            Its path (shared and immutable: hard-link or read it, never write to it).

        Raises:
            InvalidArgument: When the key is not a SHA-256 hex digest.

        """
        return self._path_for(blob.key)

    def exists(self, blob: BlobRef) -> bool:
        """Whether a blob's bytes are present.

        Args:
            blob: The blob.

        Returns:
            True when the file exists.

        """
        return self._path_for(blob.key).is_file()

    def ingest_file(self, path: Path) -> BlobRef:
        """Hash a finished file, then move it into the store.

        The file is moved (renamed) only when that is safe: a regular file owned by this process's user, with
        no other hard link, on the store's filesystem. Otherwise its bytes are copied, so nobody who could
        write to the original can ever change a stored blob. Symbolic links are never followed.

        Args:
            path: The file; it no longer exists at that path afterwards.

        Returns:
            The stored blob.

        Raises:
            NotFound: When the file does not exist.
            InvalidArgument: When the path is not a regular file (e.g. a symbolic link or a directory).

        """
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise NotFound(f"file '{path}'") from None
        except OSError as error:
            raise InvalidArgument(f"cannot ingest '{path}': {error.strerror}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise InvalidArgument(f"cannot ingest '{path}': not a regular file")
        with open(fd, "rb", buffering=0) as source:
            if info.st_uid != os.geteuid() or info.st_nlink != 1:
                ref = self._copy_from(source)
                path.unlink()
                return ref
            digest, size = _sha256(fd)
            os.fsync(fd)
            if self._reuse(self._path_for(digest)):
                path.unlink()
                return BlobRef(key=digest, size=size, sha256=digest)
            tmp_fd, name = tempfile.mkstemp(prefix="i-", suffix=".tmp", dir=self.tmp_dir)
            os.close(tmp_fd)
            tmp = Path(name)
            try:
                # Rename within the store's filesystem first, so the final rename below is atomic.
                os.replace(path, tmp)
            except OSError as error:
                tmp.unlink()
                if error.errno != errno.EXDEV:
                    raise
                source.seek(0)
                ref = self._copy_from(source)
                path.unlink()
                return ref
            moved = tmp.stat()
            if (moved.st_dev, moved.st_ino) != (info.st_dev, info.st_ino):
                # The path was swapped for another file after it was hashed: store nothing unhashed.
                tmp.unlink()
                raise InvalidArgument(f"'{path}' changed while it was being ingested")
            os.chmod(tmp, _FILE_MODE)
            return self._install(tmp, digest, size)

    def store_ranges(self, fd: int, ranges: Sequence[tuple[int, int]]) -> list[BlobRef]:
        """Store many blobs at once: the bytes at ``(offset, size)`` of ``fd``, one blob per range.

        Made durable together rather than one by one: each new blob is written to a temporary file, all of
        them are fsynced at once from a few threads (the filesystem's journal serves concurrent fsyncs with
        shared commits, where one after the other each waits for its own), then renamed into place, and
        their directories are fsynced the same way. A crash still leaves no torn blob: nothing is renamed
        to its content address before its bytes are durable. A range whose bytes are already stored (or
        repeat an earlier range) is hashed but not written again.

        Args:
            fd: A readable descriptor (positional reads only: its offset is not used).
            ranges: ``(offset, size)`` of each blob's bytes.

        Returns:
            One reference per range, in order.

        Raises:
            InvalidArgument: The file ends inside a range.

        """
        refs: list[BlobRef] = []
        pending: dict[str, Path] = {}
        try:
            for offset, size in ranges:
                hasher = hashlib.sha256()
                done = 0
                while done < size:
                    chunk = os.pread(fd, min(_CHUNK, size - done), offset + done)
                    if not chunk:
                        raise InvalidArgument(f"the file ends inside the range at {offset} ({size} bytes)")
                    hasher.update(chunk)
                    done += len(chunk)
                digest = hasher.hexdigest()
                refs.append(BlobRef(key=digest, size=size, sha256=digest))
                if digest in pending or self._reuse(self._path_for(digest)):
                    continue
                tmp_fd, name = tempfile.mkstemp(prefix="w-", suffix=".tmp", dir=self.tmp_dir)
                pending[digest] = Path(name)
                try:
                    os.fchmod(tmp_fd, _FILE_MODE)
                    if _copy_all(fd, tmp_fd, size, 0, source_offset=offset) != size:
                        raise InvalidArgument(f"the file ends inside the range at {offset} ({size} bytes)")
                finally:
                    os.close(tmp_fd)
            if pending:
                self._install_many(pending)
        except BaseException:
            for path in pending.values():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise
        return refs

    def _install_many(self, pending: dict[str, Path]) -> None:
        """Make the written temporary files durable, rename them to their content addresses, persist that."""
        _fsync_all(pending.values())
        directories: set[Path] = set()
        for digest in list(pending):
            target = self._path_for(digest)
            if self._reuse(target):
                pending.pop(digest).unlink()
                continue
            for directory in (target.parent.parent, target.parent):
                directory.mkdir(mode=DIR_MODE, exist_ok=True)
            os.replace(pending.pop(digest), target)
            directories.add(target.parent)
        _fsync_all(directories)

    def _copy_from(self, source: BinaryIO) -> BlobRef:
        with self.open_writer() as writer:
            while chunk := source.read(_CHUNK):
                writer.write(chunk)
            return writer.commit()

    def concat(self, parts: Sequence[BlobRef]) -> BlobRef:
        """Store the concatenation of existing blobs as a new blob.

        The bytes are copied kernel-side with ``os.copy_file_range`` where available; the SHA-256 of the
        result is then computed in one sequential pass over the (page-cache hot) new file.

        Args:
            parts: The blobs, in order.

        Returns:
            The stored concatenation.

        Raises:
            NotFound: When a part's bytes are missing.

        """
        fd, name = tempfile.mkstemp(prefix="c-", suffix=".tmp", dir=self.tmp_dir)
        tmp = Path(name)
        try:
            offset = 0
            for part in parts:
                try:
                    source_fd = os.open(self.path(part), os.O_RDONLY)
                except FileNotFoundError:
                    raise NotFound(f"blob {part.key}") from None
                try:
                    offset += _copy_all(source_fd, fd, part.size, offset)
                finally:
                    os.close(source_fd)
            os.fchmod(fd, _FILE_MODE)
            os.fsync(fd)
            digest, _ = _sha256(fd, offset)
            os.close(fd)
            fd = -1
            return self._install(tmp, digest, offset)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    # Upload files (``UploadFileStore``)

    def _upload_path(self, upload_id: str) -> Path:
        if not upload_id or len(upload_id) > 128 or not _UPLOAD_ID_CHARS.issuperset(upload_id):
            raise InvalidArgument(f"not an upload id: {upload_id!r}")
        return self.tmp_dir / f"{_UPLOAD_PREFIX}{upload_id}{_UPLOAD_SUFFIX}"

    def create_upload_file(self, upload_id: str) -> None:
        """Create the empty upload file of an in-place multipart upload.

        Its parts are written at their offsets later (``open_upload_file``); the gaps stay holes, so the file
        costs only the bytes actually written.

        Args:
            upload_id: The upload.

        Raises:
            InvalidArgument: When the id is not a plain token, or the file already exists.

        """
        try:
            fd = os.open(self._upload_path(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise InvalidArgument(f"upload file of '{upload_id}' already exists") from None
        os.close(fd)

    def open_upload_file(self, upload_id: str) -> LocalUploadFile:
        """Open an upload file for writing parts at their offsets.

        Args:
            upload_id: The upload.

        Returns:
            A handle; close it when done.

        Raises:
            NotFound: When the upload has no file (finished, aborted, or swept as stale).

        """
        return LocalUploadFile(self._upload_path(upload_id), upload_id, self.prefixes)

    def _open_upload_for_reading(self, upload_id: str) -> int:
        return os.open(self._upload_path(upload_id), os.O_RDONLY)

    def install_upload_file(
        self,
        upload_id: str,
        size: int,
        *,
        part_size: int | None = None,
        part_digests: Callable[[], Sequence[str]] | None = None,
    ) -> BlobRef:
        """Turn a finished upload file into a blob: truncate, hash, fsync, rename into place.

        The file is truncated to ``size`` (dropping anything written past the last listed part), hashed and
        renamed to its content address; no byte is copied. Writers are excluded meanwhile (see
        ``LocalUploadFile``). Most of the hashing usually happened while the parts arrived (`PrefixHashes`):
        only the parts past the prefix that ``part_digests`` confirms are hashed here.

        Args:
            upload_id: The upload.
            size: The object's size: the sum of its parts.
            part_size: The upload's part size (parts 1..N-1 hold exactly this many bytes).
            part_digests: Reads the digests of parts 1..N as recorded now (called once the file is locked).

        Returns:
            The stored blob (an existing one when identical bytes were already stored).

        Raises:
            NotFound: When the upload has no file.

        """
        path = self._upload_path(upload_id)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise NotFound(f"upload file of '{upload_id}'") from None
        try:
            # Waits for in-flight part writes (which hold the shared lock) and keeps new ones out until the
            # file has its content address; they then find the path gone and stop.
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The background pass is over (taken) before the file changes size under it.
            if part_size is None or part_digests is None:
                self.prefixes.forget(upload_id)
                state, covered, part_size = hashlib.sha256(), 0, 1
            else:
                state, covered = self.prefixes.take(upload_id, part_size, part_digests())
            os.ftruncate(fd, size)
            start = min(covered * part_size, size)
            sha256_update(state, fd, start, size - start, read_ahead=True)
            digest = state.hexdigest()
            os.fchmod(fd, _FILE_MODE)
            os.fsync(fd)
            return self._install(path, digest, size)
        finally:
            os.close(fd)

    def discard_upload_file(self, upload_id: str) -> None:
        """Delete an upload file; a no-op when it is already gone.

        Args:
            upload_id: The upload.

        """
        self.prefixes.forget(upload_id)
        with contextlib.suppress(FileNotFoundError):
            self._upload_path(upload_id).unlink()

    def upload_file_ids(self, older_than: float) -> list[str]:
        """Return the uploads whose file was last written before ``older_than`` (a ``time.time()`` value).

        Args:
            older_than: Cut-off modification time.

        Returns:
            Upload ids, for garbage collection of files whose upload is gone.

        """
        ids: list[str] = []
        for entry in self.tmp_dir.iterdir():
            name = entry.name
            if not (name.startswith(_UPLOAD_PREFIX) and name.endswith(_UPLOAD_SUFFIX)):
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < older_than:
                    ids.append(name[len(_UPLOAD_PREFIX) : -len(_UPLOAD_SUFFIX)])
        return ids

    def _path_for(self, key: str) -> Path:
        if len(key) != 64 or not _HEX.issuperset(key):
            raise InvalidArgument(f"not a blob key: {key!r}")
        return self.root / key[:2] / key[2:4] / key

    @staticmethod
    def _reuse(target: Path) -> bool:
        """Whether ``target`` exists; refreshes its mtime so garbage collection sees it as just written."""
        try:
            os.utime(target)
        except FileNotFoundError:
            return False
        return True

    def unreferenced(self, referenced: Set[str], older_than: float) -> Iterator[BlobRef]:
        """Iterate stored blobs not in ``referenced`` whose file is older than ``older_than`` (a timestamp).

        Args:
            referenced: Keys still in use.
            older_than: Only files last written (or reused) before this ``time.time()`` value.

        Yields:
            Candidate blobs for deletion.

        """
        for first in sorted(self.root.iterdir()):
            if first == self.tmp_dir or not first.is_dir():
                continue
            for entry in sorted(p for second in first.iterdir() if second.is_dir() for p in second.iterdir()):
                key = entry.name
                if key in referenced or len(key) != 64 or not _HEX.issuperset(key):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    info = entry.stat()
                    if info.st_mtime < older_than:
                        yield BlobRef(key=key, size=info.st_size, sha256=key)

    def delete(self, blob: BlobRef, older_than: float) -> bool:
        """Delete a blob's file if it is still older than ``older_than``.

        Returns:
            Whether the file was deleted.

        """
        target = self._path_for(blob.key)
        try:
            if target.stat().st_mtime >= older_than:
                return False
            target.unlink()
        except FileNotFoundError:
            return False
        return True

    def _install(self, tmp: Path, digest: str, size: int) -> BlobRef:
        """Rename a complete, fsynced temporary file to its content address."""
        target = self._path_for(digest)
        if self._reuse(target):
            # Identical bytes are already stored; keep the existing inode (sandboxes may hard-link it).
            tmp.unlink()
        else:
            for directory in (target.parent.parent, target.parent):
                directory.mkdir(mode=DIR_MODE, exist_ok=True)
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        return BlobRef(key=digest, size=size, sha256=digest)


def _sha256(fd: int, size: int | None = None) -> tuple[str, int]:
    """Hash the first ``size`` bytes of ``fd`` (all of it when None) with positional reads.

    Returns:
        The hex digest and the number of bytes hashed.

    """
    hasher = hashlib.sha256()
    view = memoryview(bytearray(_CHUNK))
    offset = 0
    while size is None or offset < size:
        want = _CHUNK if size is None else min(_CHUNK, size - offset)
        count = os.preadv(fd, [view[:want]], offset)
        if count == 0:
            break
        hasher.update(view[:count])
        offset += count
    return hasher.hexdigest(), offset


def _fsync_path(path: Path) -> None:
    """Fsync a file or directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(paths: Iterable[Path]) -> None:
    """Fsync many files or directories at once (the journal commits one flush for concurrent ones)."""
    todo = list(paths)
    if len(todo) <= 1:
        for path in todo:
            _fsync_path(path)
        return
    with ThreadPoolExecutor(
        max_workers=min(_FSYNC_THREADS, len(todo)), thread_name_prefix="tilde-fsync"
    ) as pool:
        for _ in pool.map(_fsync_path, todo):
            pass


def _copy_all(source_fd: int, dest_fd: int, size: int, dest_offset: int, source_offset: int = 0) -> int:
    """Copy ``size`` bytes of ``source_fd`` from ``source_offset`` to ``dest_offset`` of ``dest_fd``.

    Returns:
        The bytes copied (fewer when the source ends first).

    """
    copied = 0
    use_kernel = hasattr(os, "copy_file_range")
    while copied < size:
        want = min(size - copied, 1 << 30)
        count = 0
        if use_kernel:
            try:
                count = os.copy_file_range(
                    source_fd, dest_fd, want, source_offset + copied, dest_offset + copied
                )
            except OSError as error:
                # Some filesystems refuse kernel-side copies; fall back to plain reads and writes.
                if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                use_kernel = False
                continue
        else:
            data = os.pread(source_fd, min(want, _CHUNK), source_offset + copied)
            count = os.pwrite(dest_fd, data, dest_offset + copied) if data else 0
        if count == 0:
            break
        copied += count
    return copied
