"""How many queries a listing page costs: without a delimiter a page is one range read."""

from __future__ import annotations

from typing import Any

import pytest
from storage_helpers import commit_files

from tilde.server.storage import StorageEngine
from tilde.server.storage.sqlite_history import HistoryQueries


@pytest.fixture
def range_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the committed-version range reads (``versions_at``) and the rows each asked for."""
    limits: list[int] = []
    original = HistoryQueries.versions_at

    def counted(self: HistoryQueries, repo_id: str, seq: int, keys: Any, limit: int) -> Any:
        limits.append(limit)
        return original(self, repo_id, seq, keys, limit)

    monkeypatch.setattr(HistoryQueries, "versions_at", counted)
    return limits


def test_a_page_of_one_hundred_objects_is_one_range_read(
    engine: StorageEngine, repo: str, range_reads: list[int]
) -> None:
    commit_files(engine, repo, {f"list/{n:03d}.txt": b"x" for n in range(150)})
    range_reads.clear()
    page = engine.list_objects(repo, prefix="list/", limit=100)
    assert [item.path for item in page.items] == [f"list/{n:03d}.txt" for n in range(100)]
    assert page.has_more
    assert range_reads == [101]


def test_a_short_last_page_is_one_range_read(
    engine: StorageEngine, repo: str, range_reads: list[int]
) -> None:
    commit_files(engine, repo, {f"a/{n:02d}": b"x" for n in range(30)})
    range_reads.clear()
    page = engine.list_objects(repo, prefix="a/", after="a/19", limit=100)
    assert [item.path for item in page.items] == [f"a/{n:02d}" for n in range(20, 30)]
    assert not page.has_more
    assert len(range_reads) == 1


def test_reading_the_head_does_not_load_the_head_commit(
    engine: StorageEngine, repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit_files(engine, repo, {"a.txt": b"a", "b/c.txt": b"c"})
    loads: list[int] = []
    original = HistoryQueries.get_commit_at

    def counted(self: HistoryQueries, repo_id: str, seq: int) -> Any:
        loads.append(seq)
        return original(self, repo_id, seq)

    monkeypatch.setattr(HistoryQueries, "get_commit_at", counted)
    assert engine.stat(repo, "a.txt").size == 1
    assert [item.path for item in engine.list_objects(repo, limit=10).items] == ["a.txt", "b/c.txt"]
    assert loads == []
