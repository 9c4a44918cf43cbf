"""Answers remembered per commit: a commit never changes, nor does a page of it or a small object in it.

A listing of a commit (the head or a ``ref``) is a pure function of the commit and the listing's parameters,
and an object's version and bytes at a commit are fixed too (blobs are content-addressed and immutable).
Commit ids are unique (a random part goes into each), so an answer computed once can be served again, byte
for byte, to every caller allowed to read that repository, for as long as the same commit is read. Nothing
needs invalidating: a new commit moves the head to a new id, which is a new key, and the old entries age out
of the bounded LRU. Session views (staged changes move without a commit) are never cached.

Authorization is not cached: every request is authenticated and authorized before its key is even computed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, NamedTuple, TypeVar

__all__ = ["ListingCache", "ObjectKey", "PageKey", "ReadCache", "SmallObject"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class PageKey(NamedTuple):
    """What a listing page depends on: the repository, the commit read and the listing parameters."""

    repo_id: str
    commit_id: str
    prefix: str
    delimiter: str
    after: str
    amount: int


class ObjectKey(NamedTuple):
    """Which object version a read names: the repository, the commit read and the path."""

    repo_id: str
    commit_id: str
    path: str


class SmallObject(NamedTuple):
    """A small object's response headers (without ``Content-Range``), size and bytes."""

    headers: tuple[tuple[str, str], ...]
    size: int
    data: bytes


class ReadCache(Generic[K, V]):
    """A least-recently-used map bounded by the total size of its values (sizes given by the caller).

    Used from the event loop only (no locking).

    Args:
        max_bytes: Most bytes kept (the least recently used entries go first).
        max_entry_bytes: Values larger than this are not kept at all.

    """

    def __init__(self, max_bytes: int = 32 * 1024 * 1024, max_entry_bytes: int = 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = min(max_entry_bytes, max_bytes)
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """Return the value stored under ``key`` (and mark it recently used), or None."""
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Keep ``value`` (``size`` bytes) under ``key``; drop the least recently used beyond `max_bytes`."""
        if size > self.max_entry_bytes:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self.size -= previous[1]
        self._entries[key] = (value, size)
        self.size += size
        while self.size > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.size -= dropped

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self.size = 0


class ListingCache:
    """The app's caches of immutable reads (``app.state.listing_cache``): listing pages and small objects.

    Args:
        max_bytes: Most bytes each of the two caches keeps.

    """

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.pages: ReadCache[PageKey, bytes] = ReadCache(max_bytes)
        self.objects: ReadCache[ObjectKey, SmallObject] = ReadCache(max_bytes, 64 * 1024 + 4096)
