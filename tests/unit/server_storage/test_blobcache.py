"""The node-local blob cache: verified fills, least-recently-used eviction that never touches blobs in use."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from tilde.server.storage.blobcache import BlobCache, CorruptBlob


def _key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fill(cache: BlobCache, data: bytes) -> Path:
    def fetch(sink: BinaryIO) -> None:
        sink.write(data)

    return cache.get(_key(data), len(data), fetch)


def _age(path: Path, seconds: float) -> None:
    info = path.stat()
    os.utime(path, (info.st_atime - seconds, info.st_mtime - seconds))


def fetch_wrong(sink: BinaryIO) -> None:
    sink.write(b"wrong")


def test_a_fill_is_verified_and_fetched_once(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", capacity=1 << 20)
    data = b"hello blob"
    calls: list[int] = []
    gate = threading.Event()

    def fetch(sink: BinaryIO) -> None:
        calls.append(1)
        gate.wait(5)
        sink.write(data)

    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(_key(data), len(data), fetch)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert {p.read_bytes() for p in results} == {data}
    with pytest.raises(CorruptBlob):
        cache.get(_key(b"other"), 5, lambda sink: fetch_wrong(sink))
    assert cache.lookup(_key(b"other")) is None
    assert list(cache.tmp_dir.iterdir()) == []


def test_eviction_is_lru_and_spares_linked_and_recent_files(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", capacity=350, pin_seconds=60)
    blobs = [bytes([n]) * 100 for n in range(3)]
    oldest, linked, newest = (_fill(cache, data) for data in blobs)
    _age(newest, 3600)
    _age(oldest, 3610)  # least recently used
    _age(linked, 3620)  # older still, but a sandbox tree links it
    os.link(linked, tmp_path / "tree-link")
    # A fourth blob pushes the cache over its capacity: the unlinked least recently used one goes.
    fourth = _fill(cache, b"4" * 100)
    assert not oldest.exists()
    assert linked.exists()
    assert newest.exists()
    assert fourth.exists()
    assert cache.size == 300
    # With no room at all, only the unlinked, not recently used file goes; the fresh and linked ones stay.
    cache.capacity = 0
    assert cache.evict() == 100
    assert not newest.exists()
    assert linked.exists()
    assert fourth.exists()


def test_a_file_handed_out_again_after_the_scan_is_kept(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", capacity=0, pin_seconds=60)
    path = _fill(cache, b"x" * 10)
    _age(path, 3600)
    # Handing it out refreshes its time, which pins it.
    assert cache.lookup(_key(b"x" * 10)) == path
    assert cache.evict() == 0
    assert path.exists()


def test_written_blobs_are_cached_unpinned_and_go_first(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", capacity=150, pin_seconds=60)
    used = _fill(cache, b"u" * 100)  # fetched for a reader: pinned
    fd, spare = cache.tmp_file()
    os.write(fd, b"w" * 100)
    os.close(fd)
    written = cache.adopt(_key(b"w" * 100), spare, 100, pin=False)
    # Over capacity: the blob written (not read by anyone) goes, the one handed out stays.
    assert not written.exists()
    assert used.exists()
    assert cache.size == 100
