from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from storage_helpers import ALICE, BOB, commit_files, put, read, store

from tilde.server.storage import Conflict, InvalidArgument, NotFound, SessionClosed, StorageEngine


def test_new_repository_is_empty(engine: StorageEngine, repo: str) -> None:
    assert engine.head(repo) is None
    assert engine.list_objects(repo).items == []
    assert engine.log(repo).items == []
    session = engine.create_session(repo, ALICE)
    assert session.base_commit_id is None
    assert session.state == "open"
    assert session.created_by == ALICE
    engine.init_repository(repo)  # idempotent
    with pytest.raises(NotFound):
        engine.head("no-such-repo")
    with pytest.raises(NotFound):
        engine.create_session("no-such-repo", ALICE)


def test_read_your_writes(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"keep.txt": b"old", "gone.txt": b"bye"})
    session = engine.create_session(repo, ALICE)
    version = put(
        engine, repo, session.id, "new.txt", b"fresh", content_type="text/plain", metadata={"k": "v"}
    )
    put(engine, repo, session.id, "keep.txt", b"changed")
    assert engine.stage_delete(repo, session.id, "gone.txt") is True

    seen = engine.stat(repo, "new.txt", session_id=session.id)
    assert seen.etag == version.etag
    assert seen.content_type == "text/plain"
    assert seen.metadata == {"k": "v"}
    assert read(engine, seen) == b"fresh"
    assert read(engine, engine.stat(repo, "keep.txt", session_id=session.id)) == b"changed"
    with pytest.raises(NotFound):
        engine.stat(repo, "gone.txt", session_id=session.id)
    listed = [item.path for item in engine.list_objects(repo, session_id=session.id).items]
    assert listed == ["keep.txt", "new.txt"]
    assert engine.has_changes(repo, session.id)
    changes = engine.list_changes(repo, session.id).items
    assert [(c.path, c.version is None) for c in changes] == [
        ("gone.txt", True),
        ("keep.txt", False),
        ("new.txt", False),
    ]

    # Outside the session nothing changed yet.
    assert read(engine, engine.stat(repo, "keep.txt")) == b"old"
    assert engine.stat(repo, "gone.txt").size == 3
    with pytest.raises(NotFound):
        engine.stat(repo, "new.txt")


def test_stage_delete_semantics(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"base.txt": b"1"})
    session = engine.create_session(repo, ALICE)
    assert engine.stage_delete(repo, session.id, "missing.txt") is False
    put(engine, repo, session.id, "only-staged.txt", b"x")
    assert engine.stage_delete(repo, session.id, "only-staged.txt") is True
    # Deleting something only the session wrote leaves no change behind at all.
    assert engine.list_changes(repo, session.id).items == []
    assert engine.stage_delete(repo, session.id, "base.txt") is True
    assert engine.stage_delete(repo, session.id, "base.txt") is False
    assert engine.delete_many(repo, session.id, ["base.txt", "missing.txt"]) == 0
    commit = engine.commit_session(repo, session.id, message="rm", actor=ALICE).commit
    assert commit is not None
    assert commit.object_count == 0
    assert engine.list_objects(repo).items == []


def test_delete_many(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {f"f{i}": b"%d" % i for i in range(5)})
    session = engine.create_session(repo, ALICE)
    assert engine.delete_many(repo, session.id, ["f0", "f1", "f1", "nope"]) == 2
    with pytest.raises(InvalidArgument):
        engine.delete_many(repo, session.id, ["f2", "/bad"])
    # The invalid batch staged nothing.
    assert engine.stat(repo, "f2", session_id=session.id).size == 1
    engine.commit_session(repo, session.id, message="m", actor=ALICE)
    assert [i.path for i in engine.list_objects(repo).items] == ["f2", "f3", "f4"]


def test_stage_copy_shares_bytes(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"src.bin": b"payload"})
    session = engine.create_session(repo, ALICE)
    copied = engine.stage_copy(repo, session.id, "src.bin", "dst/copy.bin")
    assert copied.blob == engine.stat(repo, "src.bin").blob
    assert read(engine, copied) == b"payload"
    with pytest.raises(NotFound):
        engine.stage_copy(repo, session.id, "missing", "x")
    engine.commit_session(repo, session.id, message="copy", actor=ALICE)
    assert engine.stat(repo, "dst/copy.bin").etag == engine.stat(repo, "src.bin").etag


def test_commit_makes_changes_visible_and_closes_session(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    put(engine, repo, session.id, "a.txt", b"abc")
    outcome = engine.commit_session(repo, session.id, message="first", actor=BOB, metadata={"why": "test"})
    assert outcome.status == "committed"
    commit = outcome.commit
    assert commit is not None
    assert commit.seq == 1
    assert commit.parent_id is None
    assert commit.message == "first"
    assert commit.committer == BOB
    assert commit.metadata == {"why": "test"}
    assert commit.object_count == 1
    assert commit.total_size == 3
    assert engine.head(repo) == commit
    info = engine.get_session(repo, session.id)
    assert info.state == "committed"
    assert info.commit_id == commit.id
    with pytest.raises(SessionClosed):
        put(engine, repo, session.id, "b.txt", b"late")
    with pytest.raises(SessionClosed):
        engine.commit_session(repo, session.id, message="again", actor=ALICE)
    with pytest.raises(SessionClosed):
        engine.rollback_session(repo, session.id)
    with pytest.raises(SessionClosed):
        engine.stat(repo, "a.txt", session_id=session.id)


def test_commit_accepts_principal_alias_and_positional_arguments(engine: StorageEngine, repo: str) -> None:
    first = engine.create_session(repo, ALICE)
    put(engine, repo, first.id, "a", b"1")
    outcome = engine.commit_session(repo, first.id, "by principal", principal=BOB)
    assert outcome.commit is not None
    assert outcome.commit.committer == BOB
    second = engine.create_session(repo, ALICE)
    put(engine, repo, second.id, "b", b"2")
    outcome = engine.commit_session(repo, second.id, "positional", ALICE, {"k": "v"})
    assert outcome.commit is not None
    assert outcome.commit.metadata == {"k": "v"}
    third = engine.create_session(repo, ALICE)
    with pytest.raises(InvalidArgument):
        engine.commit_session(repo, third.id, "nobody")


def test_no_changes(engine: StorageEngine, repo: str) -> None:
    head_id = commit_files(engine, repo, {"a": b"1"})
    session = engine.create_session(repo, ALICE)
    outcome = engine.commit_session(repo, session.id, message="nothing", actor=ALICE)
    assert outcome.status == "no_changes"
    assert outcome.commit is not None
    assert outcome.commit.id == head_id
    assert engine.get_session(repo, session.id).state == "committed"
    assert len(engine.log(repo).items) == 1
    with pytest.raises(SessionClosed):
        put(engine, repo, session.id, "b", b"2")


def _row_counts(data_dir: Path) -> dict[str, int]:
    conn = sqlite3.connect(data_dir / "meta.sqlite3")
    try:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("staged", "versions", "commits", "uploads", "upload_parts")
        }
    finally:
        conn.close()


def test_rollback_leaves_no_trace(engine: StorageEngine, repo: str, tmp_path: Path) -> None:
    commit_files(engine, repo, {"a.txt": b"base"})
    before = _row_counts(tmp_path / "data")
    head = engine.head(repo)
    session = engine.create_session(repo, ALICE)
    put(engine, repo, session.id, "a.txt", b"changed")
    put(engine, repo, session.id, "b.txt", b"new")
    engine.stage_delete(repo, session.id, "a.txt")
    upload = engine.create_upload(repo, session.id, "big.bin")
    engine.put_part(upload, 1, store(engine, b"part"))
    assert _row_counts(tmp_path / "data")["staged"] == 2

    engine.rollback_session(repo, session.id)

    assert _row_counts(tmp_path / "data") == before
    assert engine.get_session(repo, session.id).state == "rolled_back"
    assert engine.head(repo) == head
    assert [i.path for i in engine.list_objects(repo).items] == ["a.txt"]
    assert read(engine, engine.stat(repo, "a.txt")) == b"base"
    assert engine.list_changes(repo, session.id).items == []
    with pytest.raises(SessionClosed):
        engine.stat(repo, "b.txt", session_id=session.id)
    with pytest.raises(SessionClosed):
        engine.list_objects(repo, session_id=session.id)
    with pytest.raises(SessionClosed):
        put(engine, repo, session.id, "c.txt", b"late")
    with pytest.raises(SessionClosed):
        engine.rollback_session(repo, session.id)
    with pytest.raises(NotFound):
        engine.put_part(upload, 2, store(engine, b"more"))


def test_conflict_when_two_sessions_change_the_same_path(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"shared.txt": b"v0", "other.txt": b"o"})
    first = engine.create_session(repo, ALICE)
    second = engine.create_session(repo, BOB)
    put(engine, repo, first.id, "shared.txt", b"from first")
    put(engine, repo, second.id, "shared.txt", b"from second")
    put(engine, repo, second.id, "mine.txt", b"second only")
    winner = engine.commit_session(repo, first.id, message="first wins", actor=ALICE).commit
    assert winner is not None

    with pytest.raises(Conflict) as info:
        engine.commit_session(repo, second.id, message="too late", actor=BOB)
    assert info.value.code == "conflict"
    assert info.value.paths == ["shared.txt"]

    # Nothing changed: the winner's data is the head, the loser's session is intact and still open.
    assert engine.head(repo) == winner
    assert read(engine, engine.stat(repo, "shared.txt")) == b"from first"
    assert engine.get_session(repo, second.id).state == "open"
    assert read(engine, engine.stat(repo, "shared.txt", session_id=second.id)) == b"from second"
    assert read(engine, engine.stat(repo, "mine.txt", session_id=second.id)) == b"second only"
    engine.rollback_session(repo, second.id)
    assert engine.get_session(repo, second.id).state == "rolled_back"
    assert engine.head(repo) == winner


def test_conflict_on_deleted_path(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"x": b"1"})
    editor = engine.create_session(repo, ALICE)
    put(engine, repo, editor.id, "x", b"2")
    commit_files(engine, repo, {"x": None})
    with pytest.raises(Conflict):
        engine.commit_session(repo, editor.id, message="edit", actor=ALICE)


def test_non_conflicting_sessions_both_commit(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"a": b"a0", "b": b"b0"})
    first = engine.create_session(repo, ALICE)
    second = engine.create_session(repo, BOB)
    put(engine, repo, first.id, "a", b"a1")
    put(engine, repo, second.id, "b", b"b1")
    engine.stage_delete(repo, second.id, "a-does-not-exist")
    c1 = engine.commit_session(repo, first.id, message="a", actor=ALICE).commit
    c2 = engine.commit_session(repo, second.id, message="b", actor=BOB).commit
    assert c1 is not None
    assert c2 is not None
    assert c2.parent_id == c1.id
    assert read(engine, engine.stat(repo, "a")) == b"a1"
    assert read(engine, engine.stat(repo, "b")) == b"b1"
    assert c2.object_count == 2


def test_approval_parking_then_approve(engine: StorageEngine, repo: str) -> None:
    base = commit_files(engine, repo, {"a": b"1"})
    session = engine.create_session(repo, BOB)
    put(engine, repo, session.id, "a", b"2")
    outcome = engine.commit_session(
        repo, session.id, message="needs review", actor=BOB, metadata={"k": "v"}, require_approval=True
    )
    assert outcome.status == "approval_required"
    assert outcome.commit is None
    info = engine.get_session(repo, session.id)
    assert info.state == "pending_approval"
    assert info.pending_message == "needs review"
    head = engine.head(repo)
    assert head is not None
    assert head.id == base
    # Parked sessions are read-only but their changes can be reviewed.
    assert [c.path for c in engine.list_changes(repo, session.id).items] == ["a"]
    assert read(engine, engine.stat(repo, "a", session_id=session.id)) == b"2"
    with pytest.raises(SessionClosed):
        put(engine, repo, session.id, "b", b"x")
    with pytest.raises(SessionClosed):
        engine.commit_session(repo, session.id, message="again", actor=BOB)

    commit = engine.approve_session(repo, session.id, actor=ALICE, metadata={"approved": "yes"})
    assert commit.message == "needs review"
    assert commit.committer == BOB
    assert commit.metadata == {"k": "v", "approved": "yes"}
    assert engine.head(repo) == commit
    assert read(engine, engine.stat(repo, "a")) == b"2"
    info = engine.get_session(repo, session.id)
    assert info.state == "committed"
    assert info.commit_id == commit.id
    with pytest.raises(SessionClosed):
        engine.approve_session(repo, session.id, actor=ALICE)


def test_approval_parking_then_rollback(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"a": b"1"})
    session = engine.create_session(repo, BOB)
    put(engine, repo, session.id, "a", b"2")
    engine.commit_session(repo, session.id, message="m", actor=BOB, require_approval=True)
    engine.rollback_session(repo, session.id)
    assert engine.get_session(repo, session.id).state == "rolled_back"
    assert read(engine, engine.stat(repo, "a")) == b"1"
    with pytest.raises(SessionClosed):
        engine.approve_session(repo, session.id, actor=ALICE)


def test_approve_with_message_and_conflict(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"a": b"1"})
    session = engine.create_session(repo, BOB)
    put(engine, repo, session.id, "a", b"2")
    engine.commit_session(repo, session.id, message="m", actor=BOB, require_approval=True)
    commit_files(engine, repo, {"a": b"3"})
    with pytest.raises(Conflict):
        engine.approve_session(repo, session.id, actor=ALICE, message="override")
    assert engine.get_session(repo, session.id).state == "pending_approval"
    engine.rollback_session(repo, session.id)


def test_open_session_is_required(engine: StorageEngine, repo: str) -> None:
    open_session = engine.create_session(repo, ALICE)
    with pytest.raises(NotFound):
        engine.get_session(repo, "00000000-0000-0000-0000-000000000000")
    engine.init_repository("repo-2")
    with pytest.raises(NotFound):
        engine.get_session("repo-2", open_session.id)
    with pytest.raises(NotFound):
        put(engine, "repo-2", open_session.id, "a", b"x")
    with pytest.raises(NotFound):
        engine.stage_blob(repo, "unknown", "a", store(engine, b"x"))


def test_stage_blob_requires_stored_bytes(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    ref = store(engine, b"exists")
    engine.blob_path(ref).unlink()
    with pytest.raises(NotFound):
        engine.stage_blob(repo, session.id, "a", ref)
    with pytest.raises(InvalidArgument) as info:
        engine.stage_blob(repo, session.id, "a//b", store(engine, b"x"))
    assert info.value.code == "invalid_path"


def test_session_view(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"data/a.csv": b"a", "data/b.csv": b"b", "readme": b"r", "data/c.csv": b"c"})
    session = engine.create_session(repo, ALICE)
    put(engine, repo, session.id, "data/b.csv", b"b2", content_type="text/csv")
    put(engine, repo, session.id, "data/d.csv", b"d")
    engine.stage_delete(repo, session.id, "data/c.csv")
    entries = list(engine.session_view(repo, session.id))
    assert [e.path for e in entries] == ["data/a.csv", "data/b.csv", "data/d.csv", "readme"]
    assert [e.blob_path.read_bytes() for e in entries] == [b"a", b"b2", b"d", b"r"]
    assert entries[1].content_type == "text/csv"
    assert entries[1].size == 2
    assert entries[1].etag == engine.stat(repo, "data/b.csv", session_id=session.id).etag
    assert [e.path for e in engine.session_view(repo, session.id, prefix="data/")] == [
        "data/a.csv",
        "data/b.csv",
        "data/d.csv",
    ]
    with pytest.raises(NotFound):
        engine.session_view(repo, "unknown")
    engine.rollback_session(repo, session.id)
    with pytest.raises(SessionClosed):
        engine.session_view(repo, session.id)


def test_session_view_of_empty_repository(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    assert list(engine.session_view(repo, session.id)) == []
    put(engine, repo, session.id, "x", b"1")
    assert [e.path for e in engine.session_view(repo, session.id)] == ["x"]


def test_drop_repository(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"a": b"1"})
    session = engine.create_session(repo, ALICE)
    engine.drop_repository(repo)
    with pytest.raises(NotFound):
        engine.get_session(repo, session.id)
    with pytest.raises(NotFound):
        engine.head(repo)
    engine.init_repository(repo)
    assert engine.head(repo) is None
    assert engine.list_objects(repo).items == []


def test_collect_garbage_keeps_referenced_and_recent_blobs(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {"kept": b"committed bytes"})
    session = engine.create_session(repo, ALICE)
    staged = put(engine, repo, session.id, "staged", b"staged bytes")
    doomed_session = engine.create_session(repo, ALICE)
    doomed = put(engine, repo, doomed_session.id, "x", b"rolled back bytes")
    engine.rollback_session(repo, doomed_session.id)
    upload = engine.create_upload(repo, session.id, "multi")
    first, second = store(engine, b"part one "), store(engine, b"part two")
    parts = [(1, engine.put_part(upload, 1, first)), (2, engine.put_part(upload, 2, second))]
    recent = store(engine, b"uploaded, not staged yet")

    # Everything is younger than the grace period: nothing goes.
    assert engine.collect_garbage() == 0
    engine.complete_upload(repo, session.id, "multi", upload, parts, content_type="x")
    # Parts are referenced until the upload completes; afterwards they are garbage like the rolled-back blob.
    old = 1_000_000
    for blob in (doomed.blob, first, second, recent, staged.blob):
        os.utime(engine.blob_path(blob), (old, old))
    store(engine, b"uploaded, not staged yet")  # reusing identical bytes makes the blob fresh again
    assert engine.collect_garbage() == 3
    assert not engine.blob_path(doomed.blob).exists()
    assert not engine.blob_path(first).exists()
    assert not engine.blob_path(second).exists()
    assert engine.blob_path(recent).exists()
    assert read(engine, engine.stat(repo, "kept")) == b"committed bytes"
    assert read(engine, engine.stat(repo, "staged", session_id=session.id)) == b"staged bytes"
    assert read(engine, engine.stat(repo, "multi", session_id=session.id)) == b"part one part two"
    assert engine.collect_garbage(grace_seconds=0) == 1  # the never-staged upload, once its grace is over
