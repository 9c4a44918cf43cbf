"""Parts of in-place multipart uploads: written straight into their upload's file at ``(n - 1) * part_size``.

An upload created with a part size gets one sparse file in the blob store; each part is streamed to its range
while its SHA-256 is computed, then recorded in the metadata store like a blob-backed part (with no blob key).
Completing hashes the file once and renames it into place, so no byte is copied.

Writers of different parts run concurrently (distinct ranges). A part sent again (a retry) overwrites its
range; the newest writer of a part wins: an older writer still running for the same part is superseded and
fails on its next write, so it can neither mix stale bytes into the range nor record itself afterwards.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Callable, Sequence
from types import TracebackType

from tilde.server.storage.blobs import UploadFile
from tilde.server.storage.errors import InvalidArgument, StorageError
from tilde.server.storage.metadata import PartRecord

__all__ = ["InPlacePartWriter", "PartClaims"]


class PartClaims:
    """Which writer of each ``(upload, part)`` is the newest, and how many of its writes are in flight.

    Thread-safe; one per engine. Only writers in this process are known here: across processes, the upload
    file's lock still keeps writes out of a completing upload, but two processes writing the same part at
    once are not ordered.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generations = itertools.count(1)
        self._newest: dict[tuple[str, int], int] = {}
        self._in_flight: dict[tuple[str, int], int] = {}

    def claim(self, upload_id: str, part_number: int) -> int:
        """Become the newest writer of a part; waits until older writers' in-flight writes have landed.

        Returns:
            The writer's generation, for ``begin_write`` / ``end_write`` / ``release``.

        """
        key = (upload_id, part_number)
        with self._cond:
            generation = next(self._generations)
            self._newest[key] = generation
            # An older writer's write already past its check must land before ours start, or it could
            # overwrite our bytes in the shared range.
            self._cond.wait_for(lambda: self._in_flight.get(key, 0) == 0)
            return generation

    def begin_write(self, upload_id: str, part_number: int, generation: int) -> None:
        """Announce a write; raises when a newer writer of the part took over.

        Raises:
            InvalidArgument: ``part_superseded``.

        """
        key = (upload_id, part_number)
        with self._cond:
            self._check(key, generation)
            self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def end_write(self, upload_id: str, part_number: int) -> None:
        """Mark a write announced by ``begin_write`` as finished."""
        key = (upload_id, part_number)
        with self._cond:
            left = self._in_flight[key] - 1
            if left:
                self._in_flight[key] = left
            else:
                del self._in_flight[key]
            self._cond.notify_all()

    def record_if_newest(
        self, upload_id: str, part_number: int, generation: int, record: Callable[[], None]
    ) -> None:
        """Run ``record`` unless a newer writer took over (checked and run under one lock).

        Raises:
            InvalidArgument: ``part_superseded``.

        """
        with self._cond:
            self._check((upload_id, part_number), generation)
            record()

    def release(self, upload_id: str, part_number: int, generation: int) -> None:
        """Forget a finished writer (nothing to forget when a newer one took over)."""
        key = (upload_id, part_number)
        with self._cond:
            if self._newest.get(key) == generation:
                del self._newest[key]

    def _check(self, key: tuple[str, int], generation: int) -> None:
        if self._newest.get(key) != generation:
            raise InvalidArgument(
                f"part {key[1]} is being uploaded again by a newer request", code="part_superseded"
            )


class InPlacePartWriter:
    """Streams one part into its range of the upload file; ``commit`` records it and returns its etag.

    Obtain it from ``StorageEngine.part_writer``. Like a blob writer: ``write`` any number of times, then
    ``commit`` or ``abort`` (a context manager aborts unless committed).

    Args:
        upload_id: The upload.
        part_number: The part (1-based).
        part_size: The upload's part size: the range length, and the most bytes the part may hold.
        file: An open handle on the upload file (closed by this writer).
        claims: The engine's part claims.
        record: Stores the part's record in the metadata store.
        invalidate: Forgets the part's record (before this writer's first byte overwrites its range).

    """

    def __init__(
        self,
        upload_id: str,
        part_number: int,
        part_size: int,
        file: UploadFile,
        claims: PartClaims,
        record: Callable[[PartRecord], None],
        invalidate: Callable[[int], None],
    ) -> None:
        self._upload_id = upload_id
        self._number = part_number
        self._limit = part_size
        self._offset = (part_number - 1) * part_size
        self._file = file
        self._claims = claims
        self._record = record
        self._invalidate = invalidate
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False
        self._etag: str | None = None
        self._range_touched = False
        self._generation = claims.claim(upload_id, part_number)
        claimed = getattr(file, "part_claimed", None)
        if claimed is not None:
            claimed(part_number, part_size, self._generation)
        self._progress = getattr(file, "part_written", None)

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    @property
    def limit(self) -> int:
        """The most bytes this part may hold (the upload's part size)."""
        return self._limit

    def write(self, data: bytes) -> None:
        """Append bytes to the part, at its place in the upload file.

        Args:
            data: The bytes to append.

        Raises:
            InvalidArgument: ``part_too_large`` past the part size; ``part_superseded`` when the part is being
                sent again by a newer request; or the writer is closed.
            NotFound: The upload was completed or aborted meanwhile.

        """
        if self._done:
            raise InvalidArgument("part writer is closed")
        if self._size + len(data) > self._limit:
            raise InvalidArgument(
                f"part {self._number} is larger than the upload's part size of {self._limit} bytes",
                code="part_too_large",
            )
        self._hash.update(data)
        self._claims.begin_write(self._upload_id, self._number, self._generation)
        try:
            self._forget_record()
            self._file.write_at(self._offset + self._size, data)
        finally:
            self._claims.end_write(self._upload_id, self._number)
        self._size += len(data)
        if self._progress is not None:
            self._progress(self._number, self._generation, self._size)

    def write_many(self, chunks: Sequence[bytes]) -> None:
        """Append several chunks to the part, in order: one vectored write when the upload file has one.

        Raises:
            InvalidArgument: As `write`.
            NotFound: As `write`.

        """
        if self._done:
            raise InvalidArgument("part writer is closed")
        total = sum(len(chunk) for chunk in chunks)
        if self._size + total > self._limit:
            raise InvalidArgument(
                f"part {self._number} is larger than the upload's part size of {self._limit} bytes",
                code="part_too_large",
            )
        for chunk in chunks:
            self._hash.update(chunk)
        write_many_at = getattr(self._file, "write_many_at", None)
        self._claims.begin_write(self._upload_id, self._number, self._generation)
        try:
            self._forget_record()
            if write_many_at is not None:
                write_many_at(self._offset + self._size, chunks)
            else:
                self._file.write_at(self._offset + self._size, b"".join(chunks))
        finally:
            self._claims.end_write(self._upload_id, self._number)
        self._size += total
        if self._progress is not None:
            self._progress(self._number, self._generation, self._size)

    def commit(self) -> str:
        """Make the part durable and record it.

        Returns:
            The part's etag: the quoted SHA-256 of its bytes.

        Raises:
            InvalidArgument: The writer was aborted, or a newer request for the part took over.
            NotFound: The upload is gone.

        """
        if self._etag is not None:
            return self._etag
        if self._done:
            raise InvalidArgument("part writer was aborted")
        self._done = True
        digest = self._hash.hexdigest()
        part = PartRecord(self._number, "", self._size, digest)
        try:
            # Acknowledged parts survive a crash, as blob-backed parts do; completing only fsyncs the rest.
            self._file.sync()
            self._claims.record_if_newest(
                self._upload_id, self._number, self._generation, lambda: self._record(part)
            )
            recorded = getattr(self._file, "part_recorded", None)
            if recorded is not None:
                recorded(self._number, self._generation, self._limit, self._size, digest)
        finally:
            self._file.close()
            self._claims.release(self._upload_id, self._number, self._generation)
        self._etag = '"' + digest + '"'
        return self._etag

    def abort(self) -> None:
        """Give up the part; safe to call more than once and after ``commit``."""
        if self._done:
            return
        self._done = True
        try:
            self._file.close()
        finally:
            self._claims.release(self._upload_id, self._number, self._generation)

    def _forget_record(self) -> None:
        """Forget an earlier record of this part before this writer's first byte lands in its range.

        Called inside ``begin_write``/``end_write``, so a newer writer's claim waits for it and its record can
        never be the one forgotten. From the first byte on, the range no longer holds what an earlier record
        names, whatever becomes of this writer (superseded, failed, killed): only this writer's own commit
        records the part again.
        """
        if self._range_touched:
            return
        self._range_touched = True
        try:
            self._invalidate(self._number)
        except StorageError:
            pass  # the upload is gone: the write itself reports it

    def __enter__(self) -> InPlacePartWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()
