"""Multipart uploads written in place: one sparse file per upload, parts at (n - 1) * part_size, no copy."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from storage_helpers import ALICE, read, store

from tilde.server.storage import (
    InPlacePartWriter,
    InvalidArgument,
    LocalBlobStore,
    NotFound,
    SQLiteMetadataStore,
    StorageEngine,
)
from tilde.server.storage._writes import MAX_IN_PLACE_PART_SIZE

PART = 64 * 1024


def upload_files(engine: StorageEngine) -> list[Path]:
    assert isinstance(engine.blobs, LocalBlobStore)
    return sorted(engine.blobs.tmp_dir.glob("u-*"))


def writer_for(engine: StorageEngine, upload: str, number: int) -> InPlacePartWriter:
    writer = engine.part_writer(upload, number)
    assert writer is not None
    return writer


def send(engine: StorageEngine, upload: str, number: int, data: bytes, pieces: int = 3) -> str:
    """Write a part in a few pieces, as the HTTP layer does with its batches."""
    with writer_for(engine, upload, number) as writer:
        step = max(1, len(data) // pieces)
        for start in range(0, len(data), step):
            writer.write(data[start : start + step])
        return writer.commit()


def quoted_sha(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def test_parts_out_of_order_assemble_to_the_concatenation(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "big.bin", part_size=PART)
    assert len(upload_files(engine)) == 1
    chunks = [os.urandom(PART), os.urandom(PART), os.urandom(PART), os.urandom(1234)]
    etags = {number: send(engine, upload, number, chunks[number - 1]) for number in (3, 1, 4, 2)}
    assert etags == {n: quoted_sha(chunk) for n, chunk in enumerate(chunks, start=1)}
    expected = b"".join(chunks)
    version = engine.complete_upload(
        repo,
        session.id,
        "big.bin",
        upload,
        sorted(etags.items()),
        content_type="application/x-test",
        size_bytes=len(expected),
    )
    assert version.size == len(expected)
    assert version.etag == quoted_sha(expected)
    assert read(engine, version) == expected
    assert engine.blob_path(version.blob).stat().st_mode & 0o777 == 0o600
    # The file became the blob: nothing is left behind, and the upload is finished.
    assert upload_files(engine) == []
    with pytest.raises(NotFound):
        engine.abort_upload(upload)


def test_parts_written_as_chunk_lists_assemble_like_single_writes(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "many.bin", part_size=PART)
    parts = [os.urandom(PART), os.urandom(777)]
    etags = []
    for number, data in enumerate(parts, start=1):
        # Chunks of the sizes a socket hands over, more of them than one vectored write takes.
        chunks = [data[start : start + 61] for start in range(0, len(data), 61)]
        with writer_for(engine, upload, number) as writer:
            writer.write_many(chunks[:5])
            writer.write_many(chunks[5:])
            assert writer.size == len(data)
            etags.append((number, writer.commit()))
    assert [etag for _, etag in etags] == [quoted_sha(data) for data in parts]
    expected = b"".join(parts)
    version = engine.complete_upload(
        repo, session.id, "many.bin", upload, etags, content_type="application/x-test"
    )
    assert version.etag == quoted_sha(expected)
    assert read(engine, version) == expected


def test_write_many_refuses_bytes_past_the_part_size(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "big.bin", part_size=PART)
    with writer_for(engine, upload, 1) as writer:
        writer.write_many([b"x" * (PART - 1)])
        with pytest.raises(InvalidArgument) as refused:
            writer.write_many([b"y", b"z"])
        assert refused.value.code == "part_too_large"
        assert writer.size == PART - 1


def test_in_place_result_matches_the_blob_per_part_result(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    chunks = [os.urandom(PART), os.urandom(PART), os.urandom(PART // 2)]
    in_place = engine.create_upload(repo, session.id, "a", part_size=PART)
    classic = engine.create_upload(repo, session.id, "b")
    assert engine.part_writer(classic, 1) is None
    a_parts = [(n, send(engine, in_place, n, chunk)) for n, chunk in enumerate(chunks, start=1)]
    b_parts = [
        (n, engine.put_part(classic, n, store(engine, chunk))) for n, chunk in enumerate(chunks, start=1)
    ]
    assert a_parts == b_parts
    a = engine.complete_upload(repo, session.id, "a", in_place, a_parts, content_type="x")
    b = engine.complete_upload(repo, session.id, "b", classic, b_parts, content_type="x")
    assert a.blob == b.blob
    assert read(engine, a) == b"".join(chunks)


def test_retried_part_overwrites_its_range(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=8)
    first = send(engine, upload, 1, b"AAAAAAAA")
    send(engine, upload, 2, b"tail-one")
    second = send(engine, upload, 1, b"BBBBBBBB")
    tail = send(engine, upload, 2, b"tail")
    with pytest.raises(InvalidArgument) as info:
        engine.complete_upload(repo, session.id, "f", upload, [(1, first), (2, tail)], content_type="x")
    assert info.value.code == "invalid_part"
    version = engine.complete_upload(
        repo, session.id, "f", upload, [(1, second), (2, tail)], content_type="x"
    )
    # The longer first attempt of the last part is cut off.
    assert read(engine, version) == b"BBBBBBBBtail"


def test_short_last_part_and_single_part(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "short", part_size=PART)
    etag = send(engine, upload, 1, b"tiny")
    version = engine.complete_upload(
        repo, session.id, "short", upload, [(1, etag)], content_type="x", size_bytes=4
    )
    assert read(engine, version) == b"tiny"
    assert version.etag == quoted_sha(b"tiny")


def test_oversized_part_is_rejected(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=10)
    writer = writer_for(engine, upload, 1)
    assert writer.limit == 10
    writer.write(b"123456")
    with pytest.raises(InvalidArgument) as info:
        writer.write(b"78901")
    assert info.value.code == "part_too_large"
    writer.abort()
    with pytest.raises(InvalidArgument):
        engine.complete_upload(repo, session.id, "f", upload, [(1, quoted_sha(b"123456"))], content_type="x")
    # The part can still be sent properly.
    etag = send(engine, upload, 1, b"0123456789")
    version = engine.complete_upload(repo, session.id, "f", upload, [(1, etag)], content_type="x")
    assert read(engine, version) == b"0123456789"


def test_complete_checks_in_place_parts(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=4)
    e1 = send(engine, upload, 1, b"aaaa")
    e3 = send(engine, upload, 3, b"cc")
    bad_lists = {
        "missing part 2": [(1, e1), (3, e3)],
        "not starting at 1": [(3, e3)],
        "unknown part": [(1, e1), (2, e3)],
        "wrong etag": [(1, e3)],
        "empty etag": [(1, '""')],
    }
    for parts in bad_lists.values():
        with pytest.raises(InvalidArgument) as info:
            engine.complete_upload(repo, session.id, "f", upload, parts, content_type="x")
        assert info.value.code == "invalid_part"
    e2_short = send(engine, upload, 2, b"bb")
    with pytest.raises(InvalidArgument) as info:
        engine.complete_upload(
            repo, session.id, "f", upload, [(1, e1), (2, e2_short), (3, e3)], content_type="x"
        )
    assert info.value.code == "invalid_part"
    assert "every part but the last" in info.value.message
    e2 = send(engine, upload, 2, b"bbbb")
    parts = [(1, e1), (2, e2), (3, e3)]
    with pytest.raises(InvalidArgument) as info:
        engine.complete_upload(repo, session.id, "f", upload, parts, content_type="x", size_bytes=11)
    assert info.value.code == "size_mismatch"
    assert not engine.has_changes(repo, session.id)
    version = engine.complete_upload(repo, session.id, "f", upload, parts, content_type="x", size_bytes=10)
    assert read(engine, version) == b"aaaabbbbcc"


def test_parts_beyond_the_listed_ones_are_cut_off(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=4)
    e1 = send(engine, upload, 1, b"keep")
    send(engine, upload, 2, b"drop")
    version = engine.complete_upload(repo, session.id, "f", upload, [(1, e1)], content_type="x")
    assert read(engine, version) == b"keep"


def test_empty_in_place_upload(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "empty", part_size=PART)
    version = engine.complete_upload(repo, session.id, "empty", upload, [], content_type="x", size_bytes=0)
    assert version.size == 0
    assert read(engine, version) == b""
    assert upload_files(engine) == []


def test_identical_bytes_reuse_the_stored_blob(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    existing = store(engine, b"same bytes")
    inode = engine.blob_path(existing).stat().st_ino
    upload = engine.create_upload(repo, session.id, "f", part_size=5)
    parts = [(1, send(engine, upload, 1, b"same ")), (2, send(engine, upload, 2, b"bytes"))]
    version = engine.complete_upload(repo, session.id, "f", upload, parts, content_type="x")
    assert version.blob == existing
    assert engine.blob_path(version.blob).stat().st_ino == inode
    assert upload_files(engine) == []


def test_abort_deletes_the_file(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=PART)
    etag = send(engine, upload, 1, b"x" * 100)
    open_writer = writer_for(engine, upload, 2)
    assert len(upload_files(engine)) == 1
    engine.abort_upload(upload)
    assert upload_files(engine) == []
    with pytest.raises(NotFound):
        open_writer.write(b"late")
    open_writer.abort()
    with pytest.raises(NotFound):
        engine.part_writer(upload, 3)
    with pytest.raises(NotFound):
        engine.complete_upload(repo, session.id, "f", upload, [(1, etag)], content_type="x")


def test_closing_the_session_deletes_upload_files(engine: StorageEngine, repo: str) -> None:
    rolled_back = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, rolled_back.id, "f", part_size=PART)
    send(engine, upload, 1, b"x")
    engine.rollback_session(repo, rolled_back.id)
    assert upload_files(engine) == []

    committed = engine.create_session(repo, ALICE)
    engine.stage_blob(repo, committed.id, "other", store(engine, b"o"))
    engine.create_upload(repo, committed.id, "f", part_size=PART)
    assert engine.commit_session(repo, committed.id, actor=ALICE).status == "committed"
    assert upload_files(engine) == []

    unchanged = engine.create_session(repo, ALICE)
    engine.create_upload(repo, unchanged.id, "f", part_size=PART)
    assert engine.commit_session(repo, unchanged.id, actor=ALICE).status == "no_changes"
    assert upload_files(engine) == []

    pending = engine.create_session(repo, ALICE)
    engine.stage_blob(repo, pending.id, "p", store(engine, b"p"))
    engine.create_upload(repo, pending.id, "f", part_size=PART)
    outcome = engine.commit_session(repo, pending.id, actor=ALICE, require_approval=True)
    assert outcome.status == "approval_required"
    assert len(upload_files(engine)) == 1
    engine.approve_session(repo, pending.id, actor=ALICE)
    assert upload_files(engine) == []

    dropped = engine.create_session(repo, ALICE)
    engine.create_upload(repo, dropped.id, "f", part_size=PART)
    engine.drop_repository(repo)
    assert upload_files(engine) == []


def test_garbage_collection_removes_orphaned_upload_files(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    live = engine.create_upload(repo, session.id, "f", part_size=PART)
    assert isinstance(engine.blobs, LocalBlobStore)
    engine.blobs.create_upload_file("0123abcd")  # as if a crash struck between forgetting and deleting
    past = time.time() - 7200
    for path in upload_files(engine):
        os.utime(path, (past, past))
    engine.collect_garbage(grace_seconds=3600)
    assert [p.name for p in upload_files(engine)] == [f"u-{live}.tmp"]


def test_no_hint_and_unusable_hints(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    for bad in (0, -5):
        with pytest.raises(InvalidArgument):
            engine.create_upload(repo, session.id, "f", part_size=bad)
    huge = engine.create_upload(repo, session.id, "f", part_size=MAX_IN_PLACE_PART_SIZE + 1)
    assert engine.part_writer(huge, 1) is None
    assert upload_files(engine) == []
    etag = engine.put_part(huge, 1, store(engine, b"classic"))
    version = engine.complete_upload(repo, session.id, "f", huge, [(1, etag)], content_type="x")
    assert read(engine, version) == b"classic"


def test_put_part_with_a_blob_still_works_in_place(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=6)
    parts = [(1, engine.put_part(upload, 1, store(engine, b"blob-1"))), (2, send(engine, upload, 2, b"w"))]
    version = engine.complete_upload(repo, session.id, "f", upload, parts, content_type="x")
    assert read(engine, version) == b"blob-1w"
    with pytest.raises(InvalidArgument):
        engine.part_writer(upload, 0)


def test_parts_written_concurrently(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=PART)
    chunks = [os.urandom(PART) for _ in range(11)] + [os.urandom(777)]
    etags: dict[int, str] = {}
    start = threading.Barrier(4)

    def worker(numbers: list[int]) -> None:
        start.wait()
        for number in numbers:
            etags[number] = send(engine, upload, number, chunks[number - 1], pieces=7)

    threads = [threading.Thread(target=worker, args=(list(range(k, 13, 4)),)) for k in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    version = engine.complete_upload(repo, session.id, "f", upload, sorted(etags.items()), content_type="x")
    expected = b"".join(chunks)
    assert read(engine, version) == expected
    assert version.etag == quoted_sha(expected)


def test_a_newer_writer_of_a_part_supersedes_the_older(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=4)
    stale = writer_for(engine, upload, 1)
    stale.write(b"ol")
    fresh = writer_for(engine, upload, 1)
    fresh.write(b"ne")
    with pytest.raises(InvalidArgument) as info:
        stale.write(b"d!")
    assert info.value.code == "part_superseded"
    fresh.write(b"w!")
    etag = fresh.commit()
    with pytest.raises(InvalidArgument):
        stale.commit()
    version = engine.complete_upload(repo, session.id, "f", upload, [(1, etag)], content_type="x")
    assert read(engine, version) == b"new!"


def test_a_failed_rewrite_invalidates_the_part(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=4)
    etag = send(engine, upload, 1, b"good")
    with writer_for(engine, upload, 1) as broken:
        broken.write(b"ba")  # then the request dies: the range now holds neither attempt
    with pytest.raises(InvalidArgument) as info:
        engine.complete_upload(repo, session.id, "f", upload, [(1, etag)], content_type="x")
    assert info.value.code == "invalid_part"
    # A writer that wrote nothing leaves the part alone.
    etag = send(engine, upload, 1, b"good")
    writer_for(engine, upload, 1).abort()
    version = engine.complete_upload(repo, session.id, "f", upload, [(1, etag)], content_type="x")
    assert read(engine, version) == b"good"


def test_a_superseded_partial_rewrite_invalidates_the_part_even_when_the_newer_writer_fails(
    engine: StorageEngine, repo: str
) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=4)
    etag = send(engine, upload, 1, b"good")
    stale = writer_for(engine, upload, 1)
    stale.write(b"ba")  # overwrites half the recorded part's range...
    newer = writer_for(engine, upload, 1)  # ...and is overtaken by a retry
    with pytest.raises(InvalidArgument):
        stale.write(b"d!")
    stale.abort()
    newer.abort()  # the retry fails before writing anything
    # The range holds b"bad" + b"d", not the bytes the recorded etag names: completing with it must fail.
    with pytest.raises(InvalidArgument) as info:
        engine.complete_upload(repo, session.id, "f", upload, [(1, etag)], content_type="x")
    assert info.value.code == "invalid_part"


def test_no_write_lands_after_completion(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f", part_size=4)
    etag = send(engine, upload, 1, b"done")
    late = writer_for(engine, upload, 2)
    version = engine.complete_upload(repo, session.id, "f", upload, [(1, etag)], content_type="x")
    with pytest.raises(NotFound):
        late.write(b"evil")
    late.abort()
    assert read(engine, version) == b"done"


def test_databases_without_part_sizes_are_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "meta.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE uploads (id TEXT PRIMARY KEY, repo_id TEXT NOT NULL, session_id TEXT NOT NULL,"
            " path TEXT NOT NULL, created_us INTEGER NOT NULL) WITHOUT ROWID"
        )
        conn.execute("INSERT INTO uploads VALUES ('u1', 'r', 's', 'p', 1)")
    conn.close()
    for _ in range(2):
        meta = SQLiteMetadataStore(path)
        with meta.read() as tx:
            upload = tx.get_upload("u1")
        meta.close()
        assert upload is not None
        assert upload.part_size is None
