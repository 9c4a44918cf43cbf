"""Large upload writes go around the page cache (O_DIRECT) and land byte for byte where they belong."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from pathlib import Path

import pytest

from tilde.server.storage import _directio
from tilde.server.storage._directio import ALIGN, DIRECT_MIN, STAGE, pwrite_chunks, sha256_of_file
from tilde.server.storage.blobs import LocalBlobStore

pytestmark = pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="O_DIRECT is Linux's")


def _chunks(total: int, seed: int) -> list[bytes]:
    """``total`` random bytes cut into chunks of uneven sizes (like socket reads), an empty one among them."""
    sizes = [65_536, 1, 4_095, 300_000, 0, 8_191]
    chunks: list[bytes] = []
    left, index = total, seed
    while left:
        size = min(left, sizes[index % len(sizes)])
        chunks.append(os.urandom(size))
        left -= size
        index += 1
    return chunks


def _direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the length of every ``pwrite`` made while its descriptor had ``O_DIRECT`` on."""
    seen: list[int] = []
    real = os.pwrite

    def pwrite(fd: int, data: memoryview | bytes, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            assert offset % ALIGN == 0
            assert len(data) % ALIGN == 0
            seen.append(len(data))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    return seen


@pytest.mark.parametrize("offset", [0, 5, ALIGN, 3 * ALIGN - 1])
def test_large_writes_go_around_the_page_cache_at_any_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    direct = _direct_writes(monkeypatch)
    chunks = _chunks(STAGE + DIRECT_MIN + 12_345, offset)
    data = b"".join(chunks)
    target = tmp_path / "file"
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"x" * offset, 0)
        assert pwrite_chunks(fd, chunks, offset) == len(data)
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT  # left buffered for the caller
    finally:
        os.close(fd)
    assert _directio._state.enabled
    assert target.read_bytes() == b"x" * offset + data
    # Everything but the unaligned head and tail (less than a page each) went around the page cache.
    assert sum(direct) >= len(data) - 2 * ALIGN


def test_small_writes_stay_buffered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = _direct_writes(monkeypatch)
    fd = os.open(tmp_path / "file", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        pwrite_chunks(fd, [b"a" * (DIRECT_MIN - 1)], 0)
    finally:
        os.close(fd)
    assert direct == []
    assert (tmp_path / "file").read_bytes() == b"a" * (DIRECT_MIN - 1)


def test_blob_writer_and_upload_file_store_large_batches_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct = _direct_writes(monkeypatch)
    store = LocalBlobStore(tmp_path / "blobs")
    head, batch = b"head:", _chunks(2 * STAGE + 777, 1)
    expected = head + b"".join(batch)
    with store.open_writer() as writer:
        writer.write(head)
        writer.write_many(batch)
        writer.write(b"!")
        ref = writer.commit()
    assert store.path(ref).read_bytes() == expected + b"!"
    assert ref.key == hashlib.sha256(expected + b"!").hexdigest()

    part_size = 3 * STAGE
    store.create_upload_file("up1")
    second, first = _chunks(DIRECT_MIN + 99, 2), _chunks(part_size, 3)
    handle = store.open_upload_file("up1")
    try:
        handle.write_many_at(part_size, second)  # parts arrive out of order
        handle.write_many_at(0, first)
    finally:
        handle.close()
    whole = b"".join(first) + b"".join(second)
    blob = store.install_upload_file("up1", len(whole))
    assert blob.key == hashlib.sha256(whole).hexdigest()
    assert store.path(blob).read_bytes() == whole
    assert sum(direct) >= len(expected) + len(whole) - 6 * ALIGN


@pytest.mark.parametrize("size", [0, 1, ALIGN + 1, DIRECT_MIN, 2 * STAGE + 3])
def test_sha256_of_file_reads_exactly_size_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size + 100)
    path = tmp_path / "file"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert sha256_of_file(fd, size) == hashlib.sha256(data[:size]).hexdigest()
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
    finally:
        os.close(fd)


def test_a_filesystem_refusing_direct_transfers_midway_gets_buffered_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some filesystems take the O_DIRECT flag and then refuse the transfers themselves (EINVAL).
    monkeypatch.setattr(_directio._state, "enabled", True)
    real_pwrite, real_preadv = os.pwrite, os.preadv

    def refuse(fd: int) -> None:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "direct I/O refused")

    def pwrite(fd: int, data: memoryview | bytes, offset: int) -> int:
        refuse(fd)
        return real_pwrite(fd, data, offset)

    def preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        refuse(fd)
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "preadv", preadv)
    chunks = _chunks(STAGE + DIRECT_MIN + 5, 4)
    data = b"".join(chunks)
    path = tmp_path / "file"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert pwrite_chunks(fd, chunks, 3) == len(data)
        assert not _directio._state.enabled  # not tried again in this process
        monkeypatch.setattr(_directio._state, "enabled", True)
        assert sha256_of_file(fd, len(data) + 3) == hashlib.sha256(b"\0\0\0" + data).hexdigest()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"\0\0\0" + data
