"""Storing a batch of blobs at once: every range becomes its blob, made durable before it is addressable."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tilde.server.storage import InvalidArgument
from tilde.server.storage import blobs as blobs_module
from tilde.server.storage.blobs import LocalBlobStore


def spool(tmp_path: Path, pieces: list[bytes]) -> tuple[int, list[tuple[int, int]]]:
    """Write ``pieces`` into a file, a gap before each; return its descriptor and their ranges."""
    path = tmp_path / "spool"
    ranges, offset = [], 0
    with path.open("wb") as handle:
        for piece in pieces:
            handle.write(b"-gap-")
            offset += 5
            handle.write(piece)
            ranges.append((offset, len(piece)))
            offset += len(piece)
    return os.open(path, os.O_RDONLY), ranges


def test_every_range_becomes_its_blob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    existing = b"stored before"
    with store.open_writer() as writer:
        writer.write(existing)
        writer.commit()
    pieces = [os.urandom(100), b"", existing, os.urandom(3 * 1024 * 1024), b"twice", b"twice"]
    fd, ranges = spool(tmp_path, pieces)
    synced: list[str] = []
    real = blobs_module._fsync_path

    def fsync(path: Path) -> None:
        if path.name.endswith(".tmp"):
            # Every new blob's bytes are durable before any is renamed to its content address.
            assert not any(store.path(blob).exists() for blob in pending_refs)
        synced.append(path.name)
        real(path)

    pending_refs = [
        blobs_module.BlobRef(key=hashlib.sha256(p).hexdigest(), size=len(p), sha256="")
        for p in (pieces[0], pieces[1], pieces[3], pieces[4])
    ]
    monkeypatch.setattr(blobs_module, "_fsync_path", fsync)
    try:
        refs = store.store_ranges(fd, ranges)
    finally:
        os.close(fd)
    assert [ref.key for ref in refs] == [hashlib.sha256(p).hexdigest() for p in pieces]
    assert [ref.size for ref in refs] == [len(p) for p in pieces]
    for ref, piece in zip(refs, pieces, strict=True):
        assert store.path(ref).read_bytes() == piece
        assert store.path(ref).stat().st_mode & 0o777 == 0o600
    # Four new blobs (the stored one and the repeat are not written again), fsynced in one go before
    # any was renamed; their directories after.
    assert len([name for name in synced if name.endswith(".tmp")]) == 4
    assert list(store.tmp_dir.iterdir()) == []


def test_a_range_past_the_end_stores_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    fd, ranges = spool(tmp_path, [b"complete", b"cut short"])
    try:
        with pytest.raises(InvalidArgument):
            store.store_ranges(fd, [ranges[0], (ranges[1][0], ranges[1][1] + 10)])
    finally:
        os.close(fd)
    assert list(store.tmp_dir.iterdir()) == []
    assert list(store.unreferenced(set(), older_than=float("inf"))) == []
