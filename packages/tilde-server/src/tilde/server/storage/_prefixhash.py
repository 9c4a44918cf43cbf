"""The SHA-256 of an in-place upload's file, computed while its parts are still arriving.

An object's content address is the SHA-256 of all its bytes in order, so it cannot be put together from the
parts' digests: completing an upload used to hash the whole file in one pass after the last part arrived,
while the client waited. Here, as soon as parts 1 to k have arrived, a background thread hashes them (read
back from the file) and keeps the digest's state after each part. Completing then hashes only what the
prefix does not cover yet: on a multi-part upload, the pass that was all of the wait becomes a fraction of it.

What makes a prefix trustworthy: it is only used when, read from the metadata store while the upload file
is locked against writers, every part it covers still has the digest that part had when the prefix was
hashed. A part's record is cleared before a new writer's first byte lands in its range and set again only
when that writer commits (see `InPlacePartWriter`), so an unchanged record means unchanged bytes. In this
process a writer's claim also cuts the prefix back at once. Anything else (another process completing, a
part sent again) just hashes more from the file.
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


@dataclass
class _Prefix:
    """One upload: the digest's state after each hashed part, and arrived parts not hashed yet."""

    part_size: int
    #: ``states[k]`` is the SHA-256 state after parts 1..k (``states[0]`` is empty).
    states: list[Any] = field(default_factory=lambda: [hashlib.sha256()])
    #: ``digests[k - 1]`` is part k's digest when it was hashed.
    digests: list[str] = field(default_factory=list)
    #: Arrived full-size parts past the prefix: number -> digest.
    arrived: dict[int, str] = field(default_factory=dict)
    #: Moves on whenever the part being hashed (or an earlier one) is claimed again: that pass is dropped.
    generation: int = 0
    #: The part the background pass is reading (0: none).
    hashing: int = 0
    running: bool = False
    idle: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def cut(self, number: int) -> None:
        """Forget everything from part ``number`` on."""
        if number <= len(self.digests):
            del self.digests[number - 1 :]
            del self.states[number:]
        self.arrived.pop(number, None)
        if number <= self.hashing:
            self.generation += 1


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

    def claimed(self, upload_id: str, number: int) -> None:
        """Cut the prefix back before part ``number``: a writer is about to write that part."""
        with self._lock:
            prefix = self._uploads.get(upload_id)
            if prefix is not None:
                prefix.cut(number)

    def arrived(self, upload_id: str, part_size: int, number: int, size: int, digest: str) -> None:
        """Note that part ``number`` was written and recorded with ``digest``; hash it in when it is next."""
        if size != part_size:
            return  # the last part: completing hashes it
        with self._lock:
            prefix = self._uploads.get(upload_id)
            if prefix is None or prefix.part_size != part_size:
                if len(self._uploads) >= _MAX_UPLOADS:
                    self._uploads.pop(next(iter(self._uploads)))
                prefix = self._uploads[upload_id] = _Prefix(part_size)
            prefix.arrived[number] = digest
            if prefix.running or len(prefix.digests) + 1 not in prefix.arrived:
                return
            prefix.running = True
            prefix.idle.clear()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tilde-upload-hash")
            pool = self._pool
        pool.submit(self._advance, upload_id, prefix)

    def _advance(self, upload_id: str, prefix: _Prefix) -> None:
        """Hash arrived parts onto the prefix, one after the other, while the next one has arrived."""
        fd = -1
        try:
            while True:
                with self._lock:
                    number = len(prefix.digests) + 1
                    digest = prefix.arrived.get(number)
                    if digest is None or self._uploads.get(upload_id) is not prefix:
                        return
                    state = prefix.states[-1].copy()
                    generation = prefix.generation
                    prefix.hashing = number
                if fd < 0:
                    fd = self._open_file(upload_id)
                sha256_update(state, fd, (number - 1) * prefix.part_size, prefix.part_size)
                with self._lock:
                    prefix.hashing = 0
                    # Kept only when nothing claimed this part or an earlier one meanwhile; else try again.
                    if (
                        prefix.generation == generation
                        and len(prefix.digests) + 1 == number
                        and prefix.arrived.get(number) == digest
                    ):
                        del prefix.arrived[number]
                        prefix.digests.append(digest)
                        prefix.states.append(state)
        except OSError as error:
            logger.debug("upload %s: no prefix hash (%s)", upload_id, error)
        finally:
            if fd >= 0:
                os.close(fd)
            with self._lock:
                prefix.hashing = 0
                prefix.running = False
                prefix.idle.set()

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
        prefix.idle.wait()
        with self._lock:
            self._uploads.pop(upload_id, None)
            covered = 0
            for held, current in zip(prefix.digests, digests, strict=False):
                if held != current:
                    break
                covered += 1
            return prefix.states[covered].copy(), covered

    def forget(self, upload_id: str) -> None:
        """Drop an upload's prefix (completed, aborted or gone)."""
        with self._lock:
            self._uploads.pop(upload_id, None)
