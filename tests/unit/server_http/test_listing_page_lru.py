"""The read caches' LRU: bounded by bytes, least recently used entries go first."""

from __future__ import annotations

from tilde.server.api._listing_cache import ListingCache, PageKey, ReadCache


def _key(n: int) -> PageKey:
    return PageKey("repo", f"commit-{n}", "", "", "", 100)


def test_entries_are_kept_until_their_bytes_exceed_the_bound() -> None:
    cache: ReadCache[PageKey, bytes] = ReadCache(max_bytes=30, max_entry_bytes=30)
    for n in range(3):
        cache.put(_key(n), b"x" * 10, 10)
    assert len(cache) == 3
    assert cache.size == 30
    assert cache.get(_key(0)) == b"x" * 10  # now the most recently used
    cache.put(_key(3), b"y" * 10, 10)
    assert cache.get(_key(1)) is None  # the least recently used went
    assert cache.get(_key(0)) == b"x" * 10
    assert cache.size == 30
    assert len(cache) == 3


def test_an_entry_larger_than_the_entry_bound_is_not_kept() -> None:
    cache: ReadCache[PageKey, bytes] = ReadCache(max_bytes=100, max_entry_bytes=10)
    cache.put(_key(0), b"z" * 11, 11)
    assert cache.get(_key(0)) is None
    assert cache.size == 0


def test_an_entry_stored_again_replaces_its_bytes() -> None:
    cache: ReadCache[PageKey, bytes] = ReadCache(max_bytes=100)
    cache.put(_key(0), b"a" * 20, 20)
    cache.put(_key(0), b"b" * 5, 5)
    assert cache.get(_key(0)) == b"b" * 5
    assert cache.size == 5
    cache.clear()
    assert len(cache) == 0
    assert cache.size == 0


def test_the_app_caches_keep_small_objects_only() -> None:
    caches = ListingCache(max_bytes=1024 * 1024)
    assert caches.objects.max_entry_bytes < caches.pages.max_entry_bytes
