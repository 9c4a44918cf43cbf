"""A listing page encoded straight from the stored rows is the very document the per-entry path builds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tilde.server.api.common import MAX_PAGE_SIZE, paged
from tilde.server.api.serialize import listing_json, listing_page_bytes
from tilde.server.storage import Actor, NewObject, StorageEngine

ACTOR = Actor(type="user", id="u", name="U")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[StorageEngine]:
    eng = StorageEngine.open(tmp_path / "data")
    eng.init_repository("r")
    session = eng.create_session("r", ACTOR)
    for index, path in enumerate(["a.txt", "dir/b.bin", "dir/sub/c", "é/ü ñ.txt", "z\u2028"]):
        with eng.blobs.open_writer() as writer:
            writer.write(path.encode() * (index + 1))
            blob = writer.commit()
        eng.stage_blob(
            "r",
            session.id,
            path,
            blob,
            content_type="text/plain" if index % 2 else "",
            metadata={"k": f"v{index}", "ünï": "cödé"} if index % 2 else {},
        )
    eng.commit_session("r", session.id, message="m", actor=ACTOR)
    yield eng
    eng.close()


@pytest.mark.parametrize(
    ("prefix", "delimiter", "after", "limit"),
    [
        ("", "", "", 100),
        ("", "/", "", 100),
        ("dir/", "/", "", 100),
        ("", "", "a.txt", 2),
        ("", "/", "dir/", 1),
    ],
)
def test_rows_encode_to_the_same_document(
    engine: StorageEngine, prefix: str, delimiter: str, after: str, limit: int
) -> None:
    page = engine.list_objects("r", prefix=prefix, delimiter=delimiter, after=after, limit=limit)
    expected = paged([listing_json(item) for item in page.items], page.has_more, page.next_cursor).body
    rows = engine.list_records("r", prefix=prefix, delimiter=delimiter, after=after, limit=limit)
    encoded = listing_page_bytes(rows, MAX_PAGE_SIZE)
    assert encoded == expected
    assert json.loads(encoded)["results"]


def test_imported_objects_keep_their_source_metadata(engine: StorageEngine) -> None:
    session = engine.create_session("r", ACTOR)
    with engine.blobs.open_writer() as writer:
        writer.write(b"imported")
        blob = writer.commit()
    source = {"connector": "c1", "path": "s3://b/k"}
    engine.stage_objects("r", session.id, [NewObject(path="imp.bin", blob=blob, source_metadata=source)])
    engine.commit_session("r", session.id, message="m", actor=ACTOR)
    page = engine.list_objects("r", prefix="imp")
    expected = paged([listing_json(item) for item in page.items], page.has_more, page.next_cursor).body
    encoded = listing_page_bytes(engine.list_records("r", prefix="imp"), MAX_PAGE_SIZE)
    assert encoded == expected
    assert json.loads(encoded)["results"][0]["entry"]["source_metadata"] == source
