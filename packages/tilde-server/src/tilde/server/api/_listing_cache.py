"""Encoded listing pages, remembered per commit: a page of a commit never changes.

A listing of a commit (the head or a ``ref``) is a pure function of the commit and the listing's parameters:
commits are immutable, and their ids are unique (a random part goes into each). So a page encoded once can be
served again, byte for byte, to every caller allowed to list that repository, for as long as the same commit
is read. Nothing needs invalidating: a new commit moves the head to a new id, which is a new key, and the old
entries age out of the bounded LRU. Session views (staged changes move without a commit) are never cached.

Authorization is not cached: every request is authenticated and authorized before its key is even computed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

__all__ = ["ListingCache", "PageKey"]


class PageKey(NamedTuple):
    """What a listing page depends on: the repository, the commit read and the listing parameters."""

    repo_id: str
    commit_id: str
    prefix: str
    delimiter: str
    after: str
    amount: int


class ListingCache:
    """A least-recently-used map of encoded pages, bounded by their total size.

    Used from the event loop only (no locking).

    Args:
        max_bytes: Most bytes of encoded pages kept (the oldest go first).
        max_entry_bytes: Pages larger than this are not kept at all.

    """

    def __init__(self, max_bytes: int = 32 * 1024 * 1024, max_entry_bytes: int = 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = min(max_entry_bytes, max_bytes)
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._pages: OrderedDict[PageKey, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, key: PageKey) -> bytes | None:
        """Return the encoded page stored under ``key`` (and mark it recently used), or None."""
        body = self._pages.get(key)
        if body is None:
            self.misses += 1
            return None
        self.hits += 1
        self._pages.move_to_end(key)
        return body

    def put(self, key: PageKey, body: bytes) -> None:
        """Keep ``body`` under ``key``, dropping the least recently used pages beyond `max_bytes`."""
        if len(body) > self.max_entry_bytes:
            return
        previous = self._pages.pop(key, None)
        if previous is not None:
            self.size -= len(previous)
        self._pages[key] = body
        self.size += len(body)
        while self.size > self.max_bytes:
            _, dropped = self._pages.popitem(last=False)
            self.size -= len(dropped)

    def clear(self) -> None:
        """Forget every page."""
        self._pages.clear()
        self.size = 0
