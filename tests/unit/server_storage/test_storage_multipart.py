from __future__ import annotations

import hashlib
import os

import pytest
from storage_helpers import ALICE, read, store

from tilde.server.storage import InvalidArgument, NotFound, SessionClosed, StorageEngine


def upload_parts(engine: StorageEngine, upload_id: str, chunks: list[bytes]) -> list[tuple[int, str]]:
    return [
        (n, engine.put_part(upload_id, n, store(engine, chunk))) for n, chunk in enumerate(chunks, start=1)
    ]


def test_complete_concatenates_parts_in_order(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "big/file.bin")
    chunks = [os.urandom(200_000), os.urandom(150_000), b"tail"]
    parts = upload_parts(engine, upload, chunks)
    assert all(etag.startswith('"') and etag.endswith('"') for _, etag in parts)
    version = engine.complete_upload(
        repo, session.id, "big/file.bin", upload, parts, content_type="application/x-test", size_bytes=350_004
    )
    expected = b"".join(chunks)
    assert version.size == len(expected)
    assert version.etag == '"' + hashlib.sha256(expected).hexdigest() + '"'
    assert version.content_type == "application/x-test"
    assert read(engine, engine.stat(repo, "big/file.bin", session_id=session.id)) == expected
    # The upload is finished: it cannot be completed or aborted again.
    with pytest.raises(NotFound):
        engine.complete_upload(repo, session.id, "big/file.bin", upload, parts, content_type="x")
    with pytest.raises(NotFound):
        engine.abort_upload(upload)


def test_bare_etags_and_a_subset_of_parts(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f")
    parts = upload_parts(engine, upload, [b"one-", b"two-", b"three"])
    chosen = [(1, parts[0][1].strip('"')), (3, parts[2][1])]
    version = engine.complete_upload(repo, session.id, "f", upload, chosen, content_type="text/plain")
    assert read(engine, version) == b"one-three"


def test_replaced_part_uses_the_latest_bytes(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f")
    engine.put_part(upload, 1, store(engine, b"first try"))
    etag = engine.put_part(upload, 1, store(engine, b"second try"))
    version = engine.complete_upload(repo, session.id, "f", upload, [(1, etag)], content_type="x")
    assert read(engine, version) == b"second try"


def test_empty_upload(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "empty")
    version = engine.complete_upload(repo, session.id, "empty", upload, [], content_type="x", size_bytes=0)
    assert version.size == 0
    assert read(engine, version) == b""


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        ([(2, "B"), (1, "A")], "invalid_part_order"),
        ([(1, "A"), (1, "A")], "invalid_part_order"),
        ([(1, "A"), (3, "A")], "invalid_part"),
        ([(1, "B")], "invalid_part"),
        ([(1, '"0000"')], "invalid_part"),
    ],
)
def test_complete_rejects_bad_part_lists(
    engine: StorageEngine, repo: str, parts: list[tuple[int, str]], code: str
) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f")
    real = dict(upload_parts(engine, upload, [b"aaa", b"bbb"]))
    named = {"A": real[1], "B": real[2]}
    listed = [(n, named.get(etag, etag)) for n, etag in parts]
    with pytest.raises(InvalidArgument) as info:
        engine.complete_upload(repo, session.id, "f", upload, listed, content_type="x")
    assert info.value.code == code
    # Nothing was staged and the upload can still be completed properly.
    assert not engine.has_changes(repo, session.id)
    version = engine.complete_upload(repo, session.id, "f", upload, sorted(real.items()), content_type="x")
    assert read(engine, version) == b"aaabbb"


def test_complete_checks_size_and_ownership(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    other = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f")
    parts = upload_parts(engine, upload, [b"1234"])
    with pytest.raises(InvalidArgument) as info:
        engine.complete_upload(repo, session.id, "f", upload, parts, content_type="x", size_bytes=5)
    assert info.value.code == "size_mismatch"
    with pytest.raises(InvalidArgument):
        engine.complete_upload(repo, other.id, "f", upload, parts, content_type="x")
    with pytest.raises(InvalidArgument):
        engine.complete_upload(repo, session.id, "g", upload, parts, content_type="x")
    with pytest.raises(NotFound):
        engine.complete_upload(repo, session.id, "f", "no-such-upload", parts, content_type="x")


def test_part_numbers_and_unknown_uploads(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f")
    blob = store(engine, b"p")
    for bad in (0, 10_001, -1):
        with pytest.raises(InvalidArgument):
            engine.put_part(upload, bad, blob)
    engine.put_part(upload, 10_000, blob)
    with pytest.raises(NotFound):
        engine.put_part("missing", 1, blob)


def test_abort_upload(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f")
    parts = upload_parts(engine, upload, [b"x"])
    engine.abort_upload(upload)
    with pytest.raises(NotFound):
        engine.complete_upload(repo, session.id, "f", upload, parts, content_type="x")
    with pytest.raises(NotFound):
        engine.put_part(upload, 2, store(engine, b"y"))


def test_uploads_need_an_open_session(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    upload = engine.create_upload(repo, session.id, "f")
    parts = upload_parts(engine, upload, [b"x"])
    engine.rollback_session(repo, session.id)
    with pytest.raises(SessionClosed):
        engine.create_upload(repo, session.id, "g")
    with pytest.raises(SessionClosed):
        engine.complete_upload(repo, session.id, "f", upload, parts, content_type="x")
    with pytest.raises(InvalidArgument):
        engine.create_upload(repo, engine.create_session(repo, ALICE).id, "/bad")
