"""Source metadata on imported versions: staged by `stage_objects`, kept through commit, reads, listings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from storage_helpers import read, store

from tilde.server.storage import Actor, InvalidArgument, NewObject, NotFound, StorageEngine

ACTOR = Actor(type="user", id="u1", name="alice")
ORIGIN = {"connector_type": "s3", "source_path": "data/a.txt", "import_job_id": "job-1"}


def test_stage_objects_keeps_each_objects_own_attributes_through_commit(
    engine: StorageEngine, repo: str
) -> None:
    session = engine.create_session(repo, ACTOR).id
    staged = engine.stage_objects(
        repo,
        session,
        [
            NewObject("in/a.txt", store(engine, b"alpha"), "text/plain", {"k": "v"}, ORIGIN),
            NewObject("in/b.bin", store(engine, b"bravo")),
        ],
    )
    assert staged == 2
    changes = {item.path: item.version for item in engine.list_changes(repo, session).items}
    assert changes["in/a.txt"] is not None
    assert changes["in/a.txt"].source_metadata == ORIGIN
    engine.commit_session(repo, session, "import", actor=ACTOR)

    a = engine.stat(repo, "in/a.txt")
    assert (a.content_type, a.metadata, a.source_metadata) == ("text/plain", {"k": "v"}, ORIGIN)
    assert read(engine, a) == b"alpha"
    b = engine.stat(repo, "in/b.bin")
    assert (b.content_type, b.source_metadata) == ("application/octet-stream", {})
    listed = {item.path: item.version for item in engine.list_objects(repo).items}
    assert listed["in/a.txt"] is not None
    assert listed["in/a.txt"].source_metadata == ORIGIN


def test_a_later_plain_write_drops_the_origin(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ACTOR).id
    engine.stage_objects(repo, session, [NewObject("x", store(engine, b"1"), source_metadata=ORIGIN)])
    engine.commit_session(repo, session, "import", actor=ACTOR)
    session = engine.create_session(repo, ACTOR).id
    engine.stage_blob(repo, session, "x", store(engine, b"2"))
    engine.commit_session(repo, session, "overwrite", actor=ACTOR)
    assert engine.stat(repo, "x").source_metadata == {}


def test_stage_objects_refuses_bad_input_and_stages_nothing(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ACTOR).id
    good = NewObject("ok", store(engine, b"1"))
    with pytest.raises(InvalidArgument):
        engine.stage_objects(repo, session, [good, NewObject("/bad", store(engine, b"2"))])
    missing = NewObject("gone", store(engine, b"3"))
    engine.blobs.path(missing.blob).unlink()
    with pytest.raises(NotFound):
        engine.stage_objects(repo, session, [good, missing])
    assert engine.list_changes(repo, session).items == []


def test_a_database_from_before_source_metadata_is_migrated(tmp_path: Path) -> None:
    data = tmp_path / "data"
    StorageEngine.open(data).close()
    db = sqlite3.connect(data / "meta.sqlite3")
    # Rebuild both tables the way an earlier release made them (no source_metadata column).
    for table in ("versions", "staged"):
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})") if row[1] != "source_metadata"]
        db.execute(f"CREATE TABLE old_{table} AS SELECT {', '.join(columns)} FROM {table}")
        db.execute(f"DROP TABLE {table}")
        db.execute(f"ALTER TABLE old_{table} RENAME TO {table}")
    db.execute("DROP TABLE schema_version")  # earlier releases kept no schema version
    db.commit()
    db.close()

    engine = StorageEngine.open(data)
    try:
        engine.init_repository("r")
        session = engine.create_session("r", ACTOR).id
        engine.stage_objects("r", session, [NewObject("p", store(engine, b"x"), source_metadata=ORIGIN)])
        engine.commit_session("r", session, "m", actor=ACTOR)
        assert engine.stat("r", "p").source_metadata == ORIGIN
    finally:
        engine.close()
