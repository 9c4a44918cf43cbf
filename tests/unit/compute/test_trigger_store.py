"""The server's trigger store and condition matching, without HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tilde.server.auth import Principal
from tilde.server.errors import ApiError
from tilde.server.sandbox.triggers import TriggerStore, match_changes

CREATOR = Principal("user", "u-1", "alice")
FIELDS = {
    "name": "t",
    "conditions": [{"type": "prefix", "prefix": "in/", "diff_type": "any"}],
    "sandbox_config": {"image": "i", "command": ["true"]},
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TriggerStore]:
    trigger_store = TriggerStore(tmp_path / "triggers.sqlite3")
    yield trigger_store
    trigger_store.close()


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"type": "prefix", "prefix": "in/"}, ["in/a.csv", "in/b.csv", "in/old.csv"]),
        ({"type": "prefix", "prefix": ""}, ["in/a.csv", "in/b.csv", "in/old.csv", "inbox.txt"]),
        ({"type": "prefix", "prefix": "in/", "diff_type": "added"}, ["in/a.csv"]),
        ({"type": "prefix", "prefix": "in/", "diff_type": "changed"}, ["in/b.csv"]),
        ({"type": "prefix", "prefix": "in/", "diff_type": "removed"}, ["in/old.csv"]),
        ({"type": "path_exact", "path": "inbox.txt", "diff_type": "any"}, ["inbox.txt"]),
        ({"type": "path_exact", "path": "in/", "diff_type": "any"}, []),
    ],
)
def test_match_changes(condition: dict[str, str], expected: list[str]) -> None:
    changes = [
        ("in/a.csv", "added"),
        ("in/b.csv", "modified"),
        ("in/old.csv", "removed"),
        ("inbox.txt", "added"),
    ]
    assert match_changes([condition], changes) == expected


def test_any_condition_matches_and_paths_are_listed_once() -> None:
    conditions = [{"type": "prefix", "prefix": "a/"}, {"type": "path_exact", "path": "a/x"}]
    assert match_changes(conditions, [("a/x", "added"), ("b/y", "added")]) == ["a/x"]


def test_triggers_page_in_creation_order_per_repository(store: TriggerStore) -> None:
    ids = [store.create("repo-1", {**FIELDS, "name": f"t{n}"}, CREATOR).id for n in range(5)]
    store.create("repo-2", FIELDS, CREATOR)
    page, more = store.list_triggers("repo-1", "", 2)
    assert ([t.id for t in page], more) == (ids[:2], True)
    page, more = store.list_triggers("repo-1", str(page[-1].seq), 10)
    assert ([t.id for t in page], more) == (ids[2:], False)
    assert store.get("repo-1", ids[0]).created_by == "u-1"
    with pytest.raises(ApiError) as info:
        store.get("repo-2", ids[0])
    assert info.value.status == 404
    with pytest.raises(ApiError) as info:
        store.list_triggers("repo-1", "not-a-cursor", 10)
    assert info.value.status == 400


def test_update_merges_and_disabling_hides_from_evaluation(store: TriggerStore) -> None:
    trigger = store.create("r", {**FIELDS, "description": "d"}, CREATOR)
    updated = store.update("r", trigger.id, {"name": "renamed", "run_as": None})
    assert (updated.name, updated.description, updated.conditions) == ("renamed", "d", trigger.conditions)
    assert store.enabled("r") == [updated]
    store.update("r", trigger.id, {"enabled": False})
    assert store.enabled("r") == []
    with pytest.raises(ApiError):
        store.update("r", "missing", {"name": "x"})
    store.delete("r", trigger.id)
    with pytest.raises(ApiError):
        store.delete("r", trigger.id)


def test_runs_newest_first_and_lineage_follows_sandbox_commits(store: TriggerStore) -> None:
    trigger = store.create("r", FIELDS, CREATOR)
    first = store.add_run(trigger, "c1", "pending", matched_paths=["in/a"], lineage=[trigger.id])
    store.finish_run(first, "created", sandbox_id="s1")
    second = store.add_run(trigger, "c2", "skipped", matched_paths=["in/b"], lineage=[trigger.id], reason="x")
    runs, more = store.list_runs("r", trigger.id, "", 10)
    assert ([r.id for r in runs], more) == ([second, first], False)
    runs, _ = store.list_runs("r", trigger.id, str(runs[0].seq), 10)
    assert [r.id for r in runs] == [first]
    assert runs[0].sandbox_id == "s1"

    assert store.open_sandbox_runs("r") == [(first, "s1")]
    assert store.lineage_of("r", "c3") == []
    store.settle(first, "c3")
    assert store.open_sandbox_runs("r") == []
    assert store.lineage_of("r", "c3") == [trigger.id]
