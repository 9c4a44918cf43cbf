from __future__ import annotations

import itertools
import os

import pytest
from storage_helpers import ALICE, BOB, commit_files, put, read

from tilde.server.storage import CommitInfo, InvalidArgument, NotFound, StorageEngine
from tilde.server.storage.treehash import EMPTY_TREE


def full_log(engine: StorageEngine, repo: str, limit: int, ref: str | None = None) -> list[CommitInfo]:
    commits: list[CommitInfo] = []
    after = None
    while True:
        page = engine.log(repo, ref=ref, after=after, limit=limit)
        commits += page.items
        if not page.has_more:
            assert page.next_cursor is None
            return commits
        assert page.next_cursor == page.items[-1].id
        after = page.next_cursor


def test_log_newest_first_with_cursors(engine: StorageEngine, repo: str) -> None:
    ids = [commit_files(engine, repo, {f"f{n}": b"%d" % n}, message=f"commit {n}") for n in range(7)]
    for limit in (1, 2, 3, 7, 100):
        commits = full_log(engine, repo, limit)
        assert [c.id for c in commits] == ids[::-1]
    commits = full_log(engine, repo, 100)
    assert [c.seq for c in commits] == [7, 6, 5, 4, 3, 2, 1]
    assert [c.message for c in commits][:2] == ["commit 6", "commit 5"]
    for child, parent in itertools.pairwise(commits):
        assert child.parent_id == parent.id
    assert commits[-1].parent_id is None
    # Starting from an older commit.
    assert [c.id for c in full_log(engine, repo, 2, ref=ids[3])] == ids[3::-1]
    with pytest.raises(NotFound):
        engine.log(repo, ref="f" * 64)
    with pytest.raises(NotFound):
        engine.log(repo, after="f" * 64)


def test_get_commit_and_resolve_ref(engine: StorageEngine, repo: str) -> None:
    first = commit_files(engine, repo, {"a": b"1"})
    second = commit_files(engine, repo, {"a": b"2"})
    assert engine.get_commit(repo, first).seq == 1
    resolved = engine.resolve_ref(repo, None)
    assert resolved is not None
    assert resolved.id == second
    assert engine.resolve_ref(repo, "") == resolved
    by_prefix = engine.resolve_ref(repo, first[:12])
    assert by_prefix is not None
    assert by_prefix.id == first
    with pytest.raises(NotFound):
        engine.get_commit(repo, "0" * 64)
    with pytest.raises(NotFound):
        engine.resolve_ref(repo, "nope")
    engine.init_repository("other")
    with pytest.raises(NotFound):
        engine.get_commit("other", first)


def test_historic_reads_by_ref(engine: StorageEngine, repo: str) -> None:
    c1 = commit_files(engine, repo, {"a": b"a1", "b": b"b1"})
    c2 = commit_files(engine, repo, {"a": b"a2", "c": b"c2"})
    c3 = commit_files(engine, repo, {"b": None, "a": b"a3"})
    assert read(engine, engine.stat(repo, "a", ref=c1)) == b"a1"
    assert read(engine, engine.stat(repo, "a", ref=c2)) == b"a2"
    assert read(engine, engine.stat(repo, "a", ref=c3)) == b"a3"
    assert read(engine, engine.stat(repo, "a")) == b"a3"
    assert read(engine, engine.stat(repo, "b", ref=c2)) == b"b1"
    with pytest.raises(NotFound):
        engine.stat(repo, "b", ref=c3)
    with pytest.raises(NotFound):
        engine.stat(repo, "c", ref=c1)
    listing = {ref: [i.path for i in engine.list_objects(repo, ref=ref).items] for ref in (c1, c2, c3)}
    assert listing == {c1: ["a", "b"], c2: ["a", "b", "c"], c3: ["a", "c"]}
    # A session sees its base commit even after the head moves on.
    session = engine.create_session(repo, ALICE)
    commit_files(engine, repo, {"a": b"a4"})
    assert read(engine, engine.stat(repo, "a", session_id=session.id)) == b"a3"
    assert [i.path for i in engine.list_objects(repo, session_id=session.id).items] == ["a", "c"]


def test_commit_counters_and_tree_id(engine: StorageEngine, repo: str) -> None:
    c1 = engine.get_commit(repo, commit_files(engine, repo, {"a": b"12", "b": b"345"}))
    assert (c1.object_count, c1.total_size) == (2, 5)
    c2 = engine.get_commit(repo, commit_files(engine, repo, {"a": b"1", "c": b"6789"}))
    assert (c2.object_count, c2.total_size) == (3, 8)
    c3 = engine.get_commit(repo, commit_files(engine, repo, {"c": None}))
    assert (c3.object_count, c3.total_size) == (2, 4)
    assert len({c1.tree_id, c2.tree_id, c3.tree_id}) == 3
    # Restoring the first tree's content gives the first tree id back.
    c4 = engine.get_commit(repo, commit_files(engine, repo, {"a": b"12"}))
    assert c4.tree_id == c1.tree_id
    c5 = engine.get_commit(repo, commit_files(engine, repo, {"a": None, "b": None}))
    assert c5.tree_id == EMPTY_TREE
    assert (c5.object_count, c5.total_size) == (0, 0)


def test_equal_trees_in_different_repositories(engine: StorageEngine) -> None:
    engine.init_repository("x")
    engine.init_repository("y")
    commit_files(engine, "x", {"p": b"1", "q": b"2"})
    commit_files(engine, "y", {"q": b"2"})
    commit_files(engine, "y", {"p": b"1"})
    hx, hy = engine.head("x"), engine.head("y")
    assert hx is not None
    assert hy is not None
    assert hx.tree_id == hy.tree_id


def test_diff(engine: StorageEngine, repo: str) -> None:
    c1 = commit_files(engine, repo, {"keep": b"k", "mod": b"m1", "del": b"d", "dir/x": b"x1"})
    c2 = commit_files(engine, repo, {"mod": b"m2", "del": None, "new": b"n", "dir/x": b"x2", "dir/y": b"y"})
    page = engine.diff(repo, left=c1, right=c2)
    assert [(i.path, i.status) for i in page.items] == [
        ("del", "removed"),
        ("dir/x", "modified"),
        ("dir/y", "added"),
        ("mod", "modified"),
        ("new", "added"),
    ]
    by_path = {i.path: i for i in page.items}
    removed = by_path["del"].version
    assert removed is not None
    assert read(engine, removed) == b"d"
    modified = by_path["mod"].version
    assert modified is not None
    assert read(engine, modified) == b"m2"
    # Against the empty tree everything is added.
    root = engine.diff(repo, left=None, right=c1)
    assert [(i.path, i.status) for i in root.items] == [
        ("del", "added"),
        ("dir/x", "added"),
        ("keep", "added"),
        ("mod", "added"),
    ]
    # Delimiter, prefix and paging.
    collapsed = engine.diff(repo, left=c1, right=c2, delimiter="/")
    assert [(i.path, i.type, i.status) for i in collapsed.items][:2] == [
        ("del", "object", "removed"),
        ("dir/", "prefix", None),
    ]
    assert [i.path for i in engine.diff(repo, left=c1, right=c2, prefix="dir/").items] == ["dir/x", "dir/y"]
    first = engine.diff(repo, left=c1, right=c2, limit=2)
    assert first.has_more
    assert first.next_cursor == "dir/x"
    rest = engine.diff(repo, left=c1, right=c2, after=first.next_cursor, limit=10)
    assert [i.path for i in rest.items] == ["dir/y", "mod", "new"]
    assert not rest.has_more
    # Reversed sides swap added and removed.
    backwards = engine.diff(repo, left=c2, right=c1)
    assert {i.path: i.status for i in backwards.items}["del"] == "added"
    assert {i.path: i.status for i in backwards.items}["new"] == "removed"


def test_diff_skips_paths_changed_and_changed_back(engine: StorageEngine, repo: str) -> None:
    c1 = commit_files(engine, repo, {"a": b"1", "b": b"1"})
    commit_files(engine, repo, {"a": b"2"})
    c3 = commit_files(engine, repo, {"a": b"1", "b": b"3"})
    assert [(i.path, i.status) for i in engine.diff(repo, left=c1, right=c3).items] == [("b", "modified")]
    with pytest.raises(NotFound):
        engine.diff(repo, left=c1, right="0" * 64)


def test_revert_restores_exact_bytes(engine: StorageEngine, repo: str) -> None:
    original = os.urandom(50_000)
    c1 = commit_files(engine, repo, {"data.bin": original, "gone.txt": b"keep me", "other": b"o"})
    bad = commit_files(
        engine, repo, {"data.bin": b"corrupted", "gone.txt": None, "added.txt": b"oops"}, "break"
    )
    after = commit_files(engine, repo, {"other": b"o2"})
    reverted = engine.revert(repo, bad, actor=BOB, metadata={"reason": "bad"})
    assert reverted.message == 'Revert "break"'
    assert reverted.committer == BOB
    assert reverted.metadata == {"reason": "bad"}
    assert reverted.parent_id == after
    assert read(engine, engine.stat(repo, "data.bin")) == original
    assert engine.stat(repo, "data.bin").etag == engine.stat(repo, "data.bin", ref=c1).etag
    assert read(engine, engine.stat(repo, "gone.txt")) == b"keep me"
    with pytest.raises(NotFound):
        engine.stat(repo, "added.txt")
    # Later, unrelated changes stay.
    assert read(engine, engine.stat(repo, "other")) == b"o2"
    custom = engine.revert(repo, after, actor=ALICE, message="undo other")
    assert custom.message == "undo other"
    assert read(engine, engine.stat(repo, "other")) == b"o"


def test_revert_root_commit_and_unknown(engine: StorageEngine, repo: str) -> None:
    root = commit_files(engine, repo, {"a": b"1"})
    with pytest.raises(InvalidArgument):
        engine.revert(repo, root, actor=ALICE)
    with pytest.raises(NotFound):
        engine.revert(repo, "0" * 64, actor=ALICE)


def test_staged_metadata_survives_commit(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    put(engine, repo, session.id, "m", b"1", content_type="text/plain", metadata={"owner": "me"})
    engine.commit_session(repo, session.id, message="m", actor=ALICE)
    version = engine.stat(repo, "m")
    assert version.content_type == "text/plain"
    assert version.metadata == {"owner": "me"}


def test_root_diff_pages_like_a_listing(engine: StorageEngine, repo: str) -> None:
    root = commit_files(engine, repo, {f"d{n % 3}/f{n:02d}": b"%d" % n for n in range(30)})
    seen: list[tuple[str, str | None]] = []
    after = ""
    while True:
        page = engine.diff(repo, left=None, right=root, after=after, limit=7)
        seen += [(i.path, i.status) for i in page.items]
        if not page.has_more:
            break
        assert page.next_cursor is not None
        after = page.next_cursor
    assert seen == [(i.path, "added") for i in engine.list_objects(repo, limit=100).items]
    collapsed = engine.diff(repo, left=None, right=root, delimiter="/")
    assert [(i.path, i.type) for i in collapsed.items] == [
        ("d0/", "prefix"),
        ("d1/", "prefix"),
        ("d2/", "prefix"),
    ]
    assert engine.diff(repo, left=root, right=root).items == []
