from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from tilde.server.storage import BlobRef, InvalidArgument, LocalBlobStore, NotFound


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def blob_files(store: LocalBlobStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file() and store.tmp_dir not in p.parents)


def test_writer_commits_content_addressed_file(blobs: LocalBlobStore) -> None:
    with blobs.open_writer() as writer:
        writer.write(b"hello ")
        writer.write(b"world")
        assert writer.size == 11
        ref = writer.commit()
    digest = hashlib.sha256(b"hello world").hexdigest()
    assert ref == BlobRef(key=digest, size=11, sha256=digest)
    assert ref.etag == f'"{digest}"'
    path = blobs.path(ref)
    assert path == blobs.root / digest[:2] / digest[2:4] / digest
    assert path.read_bytes() == b"hello world"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert blobs.exists(ref)
    assert list(blobs.tmp_dir.iterdir()) == []


def test_abort_leaves_no_file(blobs: LocalBlobStore) -> None:
    writer = blobs.open_writer()
    writer.write(b"x" * 100_000)
    assert len(list(blobs.tmp_dir.iterdir())) == 1
    writer.abort()
    writer.abort()  # idempotent
    assert list(blobs.tmp_dir.iterdir()) == []
    assert blob_files(blobs) == []
    with pytest.raises(InvalidArgument):
        writer.write(b"more")
    with pytest.raises(InvalidArgument):
        writer.commit()


def test_exception_inside_context_aborts(blobs: LocalBlobStore) -> None:
    def upload() -> None:
        with blobs.open_writer() as writer:
            writer.write(b"partial upload")
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        upload()
    assert list(blobs.tmp_dir.iterdir()) == []
    assert blob_files(blobs) == []


def test_context_without_commit_aborts(blobs: LocalBlobStore) -> None:
    with blobs.open_writer() as writer:
        writer.write(b"never committed")
    assert list(blobs.tmp_dir.iterdir()) == []
    assert blob_files(blobs) == []


def test_identical_content_is_stored_once(blobs: LocalBlobStore) -> None:
    refs = []
    for _ in range(3):
        with blobs.open_writer() as writer:
            writer.write(b"same bytes")
            refs.append(writer.commit())
    assert refs[0] == refs[1] == refs[2]
    assert len(blob_files(blobs)) == 1
    assert list(blobs.tmp_dir.iterdir()) == []


def test_large_chunks(blobs: LocalBlobStore) -> None:
    chunk = os.urandom(1 << 20)
    hasher = hashlib.sha256()
    with blobs.open_writer() as writer:
        for _ in range(5):
            writer.write(chunk)
            hasher.update(chunk)
        ref = writer.commit()
    assert ref.size == 5 << 20
    assert ref.sha256 == hasher.hexdigest()
    assert blobs.path(ref).stat().st_size == 5 << 20


def test_ingest_file_moves_the_file(blobs: LocalBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "output.bin"
    source.write_bytes(b"sandbox output")
    source.chmod(0o600)
    ref = blobs.ingest_file(source)
    assert ref.sha256 == hashlib.sha256(b"sandbox output").hexdigest()
    assert not source.exists()
    assert blobs.path(ref).read_bytes() == b"sandbox output"
    assert stat.S_IMODE(blobs.path(ref).stat().st_mode) == 0o600
    # A second file with the same bytes deduplicates.
    again = tmp_path / "again.bin"
    again.write_bytes(b"sandbox output")
    assert blobs.ingest_file(again) == ref
    assert not again.exists()
    assert len(blob_files(blobs)) == 1


def test_ingest_missing_file(blobs: LocalBlobStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        blobs.ingest_file(tmp_path / "nope")


def test_concat(blobs: LocalBlobStore) -> None:
    parts = []
    for data in (b"alpha-", os.urandom(300_000), b"-omega"):
        with blobs.open_writer() as writer:
            writer.write(data)
            parts.append((writer.commit(), data))
    ref = blobs.concat([p for p, _ in parts])
    expected = b"".join(d for _, d in parts)
    assert ref.size == len(expected)
    assert ref.sha256 == hashlib.sha256(expected).hexdigest()
    assert blobs.path(ref).read_bytes() == expected
    assert list(blobs.tmp_dir.iterdir()) == []
    empty = blobs.concat([])
    assert empty.size == 0
    assert empty.sha256 == hashlib.sha256(b"").hexdigest()


def test_concat_missing_part_cleans_up(blobs: LocalBlobStore) -> None:
    digest = hashlib.sha256(b"ghost").hexdigest()
    with pytest.raises(NotFound):
        blobs.concat([BlobRef(key=digest, size=5, sha256=digest)])
    assert list(blobs.tmp_dir.iterdir()) == []


def test_rejects_non_digest_keys(blobs: LocalBlobStore) -> None:
    with pytest.raises(InvalidArgument):
        blobs.path(BlobRef(key="../../etc/passwd", size=1, sha256="x"))


def test_ingest_copies_files_with_other_links(blobs: LocalBlobStore, tmp_path: Path) -> None:
    source = tmp_path / "linked.bin"
    source.write_bytes(b"shared inode")
    keeper = tmp_path / "keeper.bin"
    os.link(source, keeper)
    ref = blobs.ingest_file(source)
    assert not source.exists()
    stored = blobs.path(ref)
    assert stored.read_bytes() == b"shared inode"
    # The stored blob is not the inode someone else still holds a link to.
    assert stored.stat().st_ino != keeper.stat().st_ino
    keeper.write_bytes(b"tampered")
    assert stored.read_bytes() == b"shared inode"


def test_ingest_refuses_symlinks_and_directories(blobs: LocalBlobStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not ingest")
    link = tmp_path / "link"
    link.symlink_to(secret)
    with pytest.raises(InvalidArgument):
        blobs.ingest_file(link)
    with pytest.raises(InvalidArgument):
        blobs.ingest_file(tmp_path)
    assert blob_files(blobs) == []
    assert secret.read_bytes() == b"do not ingest"


def test_opening_the_store_sweeps_stale_temporary_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    stale = store.tmp_dir / "w-crashed.tmp"
    stale.write_bytes(b"torn")
    os.utime(stale, (1_000_000, 1_000_000))
    fresh = store.tmp_dir / "w-in-progress.tmp"
    fresh.write_bytes(b"still being written by another process")
    LocalBlobStore(tmp_path / "blobs")
    assert not stale.exists()
    assert fresh.exists()


def test_write_many_stores_the_chunks_in_order(blobs: LocalBlobStore) -> None:
    # More chunks than one vectored write takes, empty ones among them.
    chunks = [os.urandom(1 + index % 97) if index % 50 else b"" for index in range(2500)]
    with blobs.open_writer() as writer:
        writer.write(b"head:")
        writer.write_many(chunks)
        ref = writer.commit()
    expected = b"head:" + b"".join(chunks)
    assert ref.size == len(expected)
    assert ref.key == hashlib.sha256(expected).hexdigest()
    assert blobs.path(ref).read_bytes() == expected


def test_vectored_writes_go_on_after_a_short_write() -> None:
    from tilde.server.storage._directio import _write_vectored

    sink = bytearray(64)
    calls: list[int] = []

    def short_write(buffers: Sequence[memoryview | bytes], offset: int) -> int:
        # Takes at most 5 bytes per call, ending inside a buffer as a short pwritev may.
        data = b"".join(bytes(buffer) for buffer in buffers)[:5]
        sink[offset : offset + len(data)] = data
        calls.append(len(data))
        return len(data)

    chunks = [b"abc", b"", b"defgh", b"ij", b"klmnopq"]
    assert _write_vectored(short_write, chunks, 3) == 17
    assert bytes(sink[3:20]) == b"abcdefghijklmnopq"
    assert calls == [5, 5, 5, 2]
