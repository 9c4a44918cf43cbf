"""The SHA-256 of an in-place upload's file, computed while its parts are still arriving.

An object's content address is the SHA-256 of all its bytes in order, so it cannot be put together from the
parts' digests: completing an upload used to hash the whole file in one pass after the last part arrived,
while the client waited. Here a background thread follows the bytes as they are written: it hashes, read back
from the file, the longest run of bytes written from the start of the file on - the parts that arrived whole,
then what the writer of the next part has written so far - and keeps the digest's state after each whole
part. Completing then hashes only what the prefix does not cover yet.

What makes a prefix trustworthy: it is only used when, read from the metadata store while the upload file
is locked against writers, every part it covers still has the digest that part had when the prefix was
hashed, as recorded by the writer whose bytes were hashed. A part's record is cleared before a new writer's
first byte lands in its range and set again only when that writer commits (see `InPlacePartWriter`), so an
unchanged record means unchanged bytes. In this process a writer's claim also cuts the prefix back at once,
and bytes of a part are hashed only while the writer that wrote them is still the part's newest. Anything
else (another process completing, a part sent again) just hashes more from the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tilde.server.storage._directio import sha256_update

__all__ = ["PrefixHashes"]

logger = logging.getLogger("tilde.server.storage")

#: Most uploads whose prefix is kept (the oldest is forgotten first; it is then hashed whole when completed).
_MAX_UPLOADS = 256
#: Longest wait for a background pass when completing (the file is then hashed whole instead).
_TAKE_WAIT = 30.0
#: While a part is being written, its bytes are hashed in steps of whole multiples of this.
_STEP = 4 * 1024 * 1024


@dataclass
class _Part:
    """The part being hashed next: whose bytes, how many are written, and (once recorded) its digest."""

    writer: int
    written: int = 0
    digest: str | None = None


@dataclass
class _Prefix:
    """One upload: the digest's state after each whole hashed part, and the part being followed."""

    part_size: int
    #: ``states[k]`` is the SHA-256 state after parts 1..k (``states[0]`` is empty).
    states: list[Any] = field(default_factory=lambda: [hashlib.sha256()])
    #: ``digests[k - 1]`` is part k's digest as recorded by the writer whose bytes were hashed.
    digests: list[str] = field(default_factory=list)
    #: Parts past the prefix being written or recorded: number -> its newest writer's progress.
    parts: dict[int, _Part] = field(default_factory=dict)
    #: The next part's bytes hashed so far: ``(writer, bytes, state)``.
    partial: tuple[int, int, Any] | None = None
    running: bool = False
    idle: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def cut(self, number: int) -> None:
        """Forget everything from part ``number`` on (a new writer is about to write it)."""
        if number <= len(self.digests):
            del self.digests[number - 1 :]
            del self.states[number:]
            self.partial = None
        if number == len(self.digests) + 1:
            self.partial = None
        self.parts.pop(number, None)


class PrefixHashes:
    """The prefixes of the in-place uploads of one blob store (thread-safe).

    Args:
        open_file: Opens an upload's file for reading (raises ``OSError`` when it is gone).

    """

    def __init__(self, open_file: Callable[[str], int]) -> None:
        self._open_file = open_file
        self._lock = threading.Lock()
        self._uploads: dict[str, _Prefix] = {}
        self._pool: ThreadPoolExecutor | None = None

    def claimed(self, upload_id: str, part_size: int, number: int, writer: int) -> None:
        """Note that ``writer`` is about to write part ``number``: the prefix must not cover it any longer."""
        with self._lock:
            prefix = self._uploads.get(upload_id)
            if prefix is None or prefix.part_size != part_size:
                if len(self._uploads) >= _MAX_UPLOADS:
                    self._uploads.pop(next(iter(self._uploads)))
                prefix = self._uploads[upload_id] = _Prefix(part_size)
            prefix.cut(number)
            prefix.parts[number] = _Part(writer)

    def written(self, upload_id: str, number: int, writer: int, size: int) -> None:
        """Note that ``writer`` has written the first ``size`` bytes of part ``number``."""
        self._update(upload_id, number, writer, size, None)

    def arrived(
        self, upload_id: str, part_size: int, number: int, writer: int, size: int, digest: str
    ) -> None:
        """Note that ``writer`` wrote part ``number`` whole and recorded it with ``digest``."""
        if size != part_size:
            return  # the last part: completing hashes it
        self._update(upload_id, number, writer, size, digest)

    def _update(self, upload_id: str, number: int, writer: int, size: int, digest: str | None) -> None:
        with self._lock:
            prefix = self._uploads.get(upload_id)
            part = prefix.parts.get(number) if prefix is not None else None
            if prefix is None or part is None or part.writer != writer:
                return
            part.written = max(part.written, size)
            if digest is not None:
                part.digest = digest
            if prefix.running or number != len(prefix.digests) + 1:
                return
            prefix.running = True
            prefix.idle.clear()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tilde-upload-hash")
            pool = self._pool
        self._submit(pool, upload_id, prefix)

    def _submit(self, pool: ThreadPoolExecutor | None, upload_id: str, prefix: _Prefix) -> None:
        """Start a pass; when the store is closing, none (completing then hashes the rest itself)."""
        try:
            if pool is None:
                raise RuntimeError("closed")
            pool.submit(self._advance, upload_id, prefix)
        except RuntimeError:
            with self._lock:
                prefix.running = False
                prefix.idle.set()

    def _advance(self, upload_id: str, prefix: _Prefix) -> None:
        """Hash written bytes onto the prefix, part after part, as far as they go."""
        fd = -1
        try:
            while True:
                with self._lock:
                    if self._uploads.get(upload_id) is not prefix:
                        return
                    number = len(prefix.digests) + 1
                    part = prefix.parts.get(number)
                    if part is None:
                        return
                    if prefix.partial is None or prefix.partial[0] != part.writer:
                        prefix.partial = (part.writer, 0, prefix.states[-1].copy())
                    writer, done, state = prefix.partial
                    if done == prefix.part_size and part.digest is not None:
                        prefix.digests.append(part.digest)
                        prefix.states.append(state)
                        prefix.partial = None
                        del prefix.parts[number]
                        continue
                    # Whole pages while the part is still being written (direct reads), all of it at the end.
                    upto = part.written if part.written == prefix.part_size else part.written // _STEP * _STEP
                    if upto <= done:
                        return
                if fd < 0:
                    fd = self._open_file(upload_id)
                sha256_update(state, fd, (number - 1) * prefix.part_size + done, upto - done)
                with self._lock:
                    current = prefix.parts.get(number)
                    if prefix.partial is not None and prefix.partial[0] == writer and current is part:
                        prefix.partial = (writer, upto, state)
        except OSError as error:
            logger.debug("upload %s: no prefix hash (%s)", upload_id, error)
        finally:
            if fd >= 0:
                os.close(fd)
            with self._lock:
                prefix.running = False
                prefix.idle.set()
                # Bytes may have been noted while this pass was finishing: go on with them.
                again = self._uploads.get(upload_id) is prefix and self._ready(prefix)
            if again:
                self._update_again(upload_id, prefix)

    @staticmethod
    def _ready(prefix: _Prefix) -> bool:
        part = prefix.parts.get(len(prefix.digests) + 1)
        if part is None:
            return False
        done = prefix.partial[1] if prefix.partial is not None and prefix.partial[0] == part.writer else 0
        if done == prefix.part_size:
            return part.digest is not None
        upto = part.written if part.written == prefix.part_size else part.written // _STEP * _STEP
        return upto > done

    def _update_again(self, upload_id: str, prefix: _Prefix) -> None:
        with self._lock:
            if prefix.running:
                return
            prefix.running = True
            prefix.idle.clear()
            pool = self._pool
        self._submit(pool, upload_id, prefix)

    def take(self, upload_id: str, part_size: int, digests: Sequence[str]) -> tuple[Any, int]:
        """Forget an upload, returning the longest prefix that ``digests`` (parts 1..N, now) still confirm.

        Waits for a background pass of the upload to finish first.

        Returns:
            ``(state, parts)``: a SHA-256 state covering parts ``1..parts`` (a fresh one, 0, when none does).

        """
        with self._lock:
            prefix = self._uploads.get(upload_id)
        if prefix is None or prefix.part_size != part_size:
            self.forget(upload_id)
            return hashlib.sha256(), 0
        while True:
            if not prefix.idle.wait(_TAKE_WAIT):
                # A pass that slow is better left alone: completing hashes everything itself.
                logger.warning(
                    "upload %s: the background hash did not finish; hashing the whole file", upload_id
                )
                self.forget(upload_id)
                return hashlib.sha256(), 0
            with self._lock:
                if prefix.running:
                    continue
                self._uploads.pop(upload_id, None)
                covered = 0
                for held, current in zip(prefix.digests, digests, strict=False):
                    if held != current:
                        break
                    covered += 1
                return prefix.states[covered].copy(), covered

    def close(self) -> None:
        """Forget every upload and let the background threads end (a pass in flight finishes first)."""
        with self._lock:
            self._uploads.clear()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def forget(self, upload_id: str) -> None:
        """Drop an upload's prefix (completed, aborted or gone)."""
        with self._lock:
            self._uploads.pop(upload_id, None)
