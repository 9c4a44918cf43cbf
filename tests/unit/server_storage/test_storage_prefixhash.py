"""Completing an in-place upload hashes only what the prefix hashed while the parts arrived does not cover.

The prefix is trusted only while every part it covers still has the digest it had when hashed: a part sent
again, by this process or by another one sharing the store, makes completing hash it from the file again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from storage_helpers import ALICE, read

from tilde.server.storage import LocalBlobStore, StorageEngine
from tilde.server.storage import _prefixhash as prefixhash
from tilde.server.storage import blobs as blobs_module

PART = 64 * 1024


def send(engine: StorageEngine, upload: str, number: int, data: bytes) -> str:
    writer = engine.part_writer(upload, number)
    assert writer is not None
    with writer:
        writer.write_many([data[: len(data) // 2], data[len(data) // 2 :]])
        return writer.commit()


def hashed_at_install(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record the ``(offset, length)`` ranges completing hashes from the upload file itself."""
    ranges: list[tuple[int, int]] = []
    real_update = blobs_module.sha256_update

    def update(hasher: object, fd: int, offset: int, length: int, **options: bool) -> None:
        ranges.append((offset, length))
        real_update(hasher, fd, offset, length, **options)

    monkeypatch.setattr(blobs_module, "sha256_update", update)
    return ranges


def complete(engine: StorageEngine, repo: str, session: str, upload: str, etags: dict[int, str]) -> bytes:
    version = engine.complete_upload(
        repo, session, "big.bin", upload, sorted(etags.items()), content_type="application/x-test"
    )
    data = read(engine, version)
    assert version.etag == '"' + hashlib.sha256(data).hexdigest() + '"'
    return data


def test_completing_hashes_only_the_parts_past_the_prefix(
    engine: StorageEngine, repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = engine.create_session(repo, ALICE).id
    upload = engine.create_upload(repo, session, "big.bin", part_size=PART)
    parts = [os.urandom(PART), os.urandom(PART), os.urandom(PART), os.urandom(1234)]
    etags = {n: send(engine, upload, n, parts[n - 1]) for n in (2, 1, 4, 3)}
    ranges = hashed_at_install(monkeypatch)
    assert complete(engine, repo, session, upload, etags) == b"".join(parts)
    # Parts 1-3 were hashed while they arrived; completing hashed only the short last part.
    assert ranges == [(3 * PART, 1234)]


def test_a_part_sent_again_after_it_was_hashed_is_hashed_again(
    engine: StorageEngine, repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = engine.create_session(repo, ALICE).id
    upload = engine.create_upload(repo, session, "big.bin", part_size=PART)
    parts = [os.urandom(PART) for _ in range(4)]
    etags = {n: send(engine, upload, n, parts[n - 1]) for n in (1, 2, 3, 4)}
    assert isinstance(engine.blobs, LocalBlobStore)
    engine.blobs.prefixes._uploads[upload].idle.wait()
    parts[1] = os.urandom(PART)
    etags[2] = send(engine, upload, 2, parts[1])
    ranges = hashed_at_install(monkeypatch)
    assert complete(engine, repo, session, upload, etags) == b"".join(parts)
    # The new part 2 was hashed onto part 1 when it arrived; parts 3 and 4 (cut off with it) at the end.
    assert ranges == [(2 * PART, 2 * PART)]


def test_a_part_rewritten_by_another_process_is_not_taken_from_the_prefix(
    engine: StorageEngine, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = engine.create_session(repo, ALICE).id
    upload = engine.create_upload(repo, session, "big.bin", part_size=PART)
    parts = [os.urandom(PART) for _ in range(3)] + [b"end"]
    etags = {n: send(engine, upload, n, parts[n - 1]) for n in (1, 2, 3, 4)}
    assert isinstance(engine.blobs, LocalBlobStore)
    engine.blobs.prefixes._uploads[upload].idle.wait()
    # A second engine on the same data (another server process): its writer is unknown to our prefix.
    other = StorageEngine.open(tmp_path / "data")
    try:
        parts[0] = os.urandom(PART)
        etags[1] = send(other, upload, 1, parts[0])
    finally:
        other.close()
    ranges = hashed_at_install(monkeypatch)
    assert complete(engine, repo, session, upload, etags) == b"".join(parts)
    assert ranges == [(0, 3 * PART + 3)]


def test_a_part_is_hashed_while_it_is_being_written(
    engine: StorageEngine, repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = prefixhash._STEP
    session = engine.create_session(repo, ALICE).id
    upload = engine.create_upload(repo, session, "big.bin", part_size=2 * step)
    first, last = os.urandom(2 * step), b"the end"
    assert isinstance(engine.blobs, LocalBlobStore)
    prefixes = engine.blobs.prefixes
    writer = engine.part_writer(upload, 1)
    assert writer is not None
    with writer:
        writer.write_many([first[: step + 5]])
        prefixes._uploads[upload].idle.wait()
        # The whole steps written so far are hashed before the part is complete.
        partial = prefixes._uploads[upload].partial
        assert partial is not None
        assert partial[1] == step
        writer.write_many([first[step + 5 :]])
        etags = {1: writer.commit()}
    etags[2] = send(engine, upload, 2, last)
    ranges = hashed_at_install(monkeypatch)
    assert complete(engine, repo, session, upload, etags) == first + last
    assert ranges == [(2 * step, len(last))]


def test_a_part_superseded_while_it_is_hashed_is_hashed_from_its_new_bytes(
    engine: StorageEngine, repo: str
) -> None:
    step = prefixhash._STEP
    session = engine.create_session(repo, ALICE).id
    upload = engine.create_upload(repo, session, "big.bin", part_size=2 * step)
    assert isinstance(engine.blobs, LocalBlobStore)
    prefixes = engine.blobs.prefixes
    older = engine.part_writer(upload, 1)
    assert older is not None
    older.write_many([os.urandom(step + 1)])
    prefixes._uploads[upload].idle.wait()
    # A retry of part 1 takes over (the older writer is superseded and gives up).
    newer_bytes = os.urandom(2 * step)
    etags = {1: send(engine, upload, 1, newer_bytes)}
    older.abort()
    etags[2] = send(engine, upload, 2, b"tail")
    assert complete(engine, repo, session, upload, etags) == newer_bytes + b"tail"
