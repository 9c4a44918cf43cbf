"""Sandbox triggers: CRUD over the SDK, and sandboxes started by the server when a commit matches."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tilde.compute import Repository, SandboxTrigger, SandboxTriggerCondition, SandboxTriggerRun
from tilde.core import BadRequestError, NotFoundError

COUNT_SCRIPT = "mkdir -p /sandbox/out && ls /sandbox/in | wc -l > /sandbox/out/count.txt"


def _runs(trigger: SandboxTrigger) -> list[SandboxTriggerRun]:
    return list(trigger.runs.list())


def _wait_for_runs(trigger: SandboxTrigger, count: int, timeout: float = 60) -> list[SandboxTriggerRun]:
    """Poll the run history until it holds ``count`` settled runs (listeners run in the background).

    A run is recorded as ``pending`` first and settles (``created`` with its sandbox, ``skipped`` or
    ``failed``) once the sandbox has been asked for, so only settled runs count.
    """
    deadline = time.monotonic() + timeout
    while True:
        runs = _runs(trigger)
        if len(runs) >= count and all(run.status != "pending" for run in runs):
            return runs
        assert time.monotonic() < deadline, f"expected {count} runs, have {runs}"
        time.sleep(0.05)


def test_trigger_crud(repo: Repository) -> None:
    triggers = repo.sandbox_triggers
    created = triggers.create(
        name="count-inputs",
        description="count files",
        conditions=[{"type": "prefix", "prefix": "in/"}],
        sandbox_config={"image": "python:3.12", "command": ["sh", "-c", COUNT_SCRIPT], "timeout_seconds": 60},
    )
    assert created.enabled
    assert created.conditions == [SandboxTriggerCondition(type="prefix", prefix="in/", diff_type="any")]
    assert created.sandbox_config is not None
    assert created.sandbox_config.timeout_seconds == 60
    assert created.created_at is not None

    assert triggers.get(created.id).name == "count-inputs"
    assert [t.id for t in triggers.list()] == [created.id]

    # PUT is partial: what is not sent stays.
    renamed = created.update(name="renamed")
    assert renamed.name == "renamed"
    assert renamed.description == "count files"
    assert renamed.conditions == created.conditions
    assert created.name == "count-inputs"  # update returns a new object
    retargeted = renamed.update(conditions=[{"type": "path_exact", "path": "x.csv", "diff_type": "added"}])
    assert retargeted.conditions == [
        SandboxTriggerCondition(type="path_exact", path="x.csv", diff_type="added")
    ]
    assert retargeted.sandbox_config == created.sandbox_config

    disabled = retargeted.toggle(enabled=False)
    assert not disabled.enabled
    assert not created.refresh().enabled  # refresh mutates in place
    assert created.name == "renamed"

    second = triggers.create(
        name="second", conditions=[{"type": "prefix", "prefix": ""}], sandbox_config={"image": "i"}
    )
    assert [t.id for t in triggers.list(page_size=1)] == [created.id, second.id]

    created.delete()
    with pytest.raises(NotFoundError):
        triggers.get(created.id)
    with pytest.raises(NotFoundError):
        list(created.runs.list())
    triggers.delete(second.id)
    assert list(triggers.list()) == []


@pytest.mark.parametrize(
    ("conditions", "config"),
    [
        ([], {"image": "i"}),
        ([{"type": "prefix", "prefix": "a/"}] * 11, {"image": "i"}),
        ([{"type": "glob", "prefix": "a/"}], {"image": "i"}),
        ([{"type": "prefix"}], {"image": "i"}),
        ([{"type": "path_exact", "path": "../etc"}], {"image": "i"}),
        ([{"type": "prefix", "prefix": "a/", "diff_type": "touched"}], {"image": "i"}),
        ([{"type": "prefix", "prefix": "a/"}], {}),
        ([{"type": "prefix", "prefix": "a/"}], {"image": "i", "timeout_seconds": 0}),
        ([{"type": "prefix", "prefix": "a/"}], {"image": "i", "mountpoint": "/etc"}),
        ([{"type": "prefix", "prefix": "a/"}], {"image": "i", "env_vars": {"A": 1}}),
    ],
)
def test_invalid_triggers_are_refused(
    repo: Repository, conditions: list[dict[str, str]], config: dict[str, object]
) -> None:
    with pytest.raises(BadRequestError):
        repo.sandbox_triggers.create(name="bad", conditions=conditions, sandbox_config=config)
    assert list(repo.sandbox_triggers.list()) == []


def test_raw_wire_shapes(api: httpx.Client, repo_path: str) -> None:
    base = f"/organizations/{repo_path.split('/')[0]}/repositories/{repo_path.split('/')[1]}/sandbox-triggers"
    body = {"name": "t", "conditions": [{"type": "prefix", "prefix": "a/"}], "sandbox_config": {"image": "i"}}
    created = api.post(base, json={**body, "enabled": False})
    assert created.status_code == 201, created.text
    trigger = created.json()
    assert set(trigger) >= {
        "id",
        "repository_id",
        "name",
        "description",
        "enabled",
        "conditions",
        "sandbox_config",
        "run_as",
        "created_by",
        "created_at",
        "updated_at",
    }
    assert trigger["enabled"] is False
    assert trigger["run_as"] is None
    assert api.patch(f"{base}/{trigger['id']}", json={}).status_code == 400
    assert api.patch(f"{base}/{trigger['id']}", json={"enabled": "yes"}).status_code == 400
    assert api.put(f"{base}/{trigger['id']}", json={"name": ""}).status_code == 400
    assert api.get(f"{base}/not-a-trigger").status_code == 404
    assert api.post(base, content=b"{oops").json()["code"] == "invalid_json"
    listed = api.get(base, params={"amount": 0})
    assert listed.status_code == 400
    runs = api.get(f"{base}/{trigger['id']}/runs").json()
    assert runs == {
        "results": [],
        "pagination": {"has_more": False, "next_offset": "", "max_per_page": 1000},
    }
    bad_run_as = api.put(f"{base}/{trigger['id']}", json={"run_as": {"type": "agent", "id": "nobody"}})
    assert bad_run_as.status_code == 400


@pytest.mark.sandbox
def test_matching_commit_starts_a_sandbox_and_records_a_run(
    repo: Repository, seed: Callable[..., str]
) -> None:
    trigger = repo.sandbox_triggers.create(
        name="count-inputs",
        conditions=[{"type": "prefix", "prefix": "in/"}],
        sandbox_config={"image": "python:3.12", "command": ["sh", "-c", COUNT_SCRIPT]},
    )
    seed({"docs/readme.txt": b"no match"})
    commit_id = seed({"in/a.csv": b"1\n", "in/b.csv": b"2\n", "docs/more.txt": b"x"})
    [run] = _wait_for_runs(trigger, 1)
    assert run.status == "created", run.reason
    assert run.commit_id == commit_id
    assert sorted(run.matched_paths) == ["in/a.csv", "in/b.csv"]
    assert run.sandbox_id
    final = repo.sandboxes.get(run.sandbox_id).wait(timeout=60)
    assert final.is_committed, final
    head = next(iter(repo.commits.list(amount=1)))
    assert head.id == final.commit_id
    assert head.objects.get("out/count.txt").read() == b"2\n"
    # The trigger's own commit (out/...) does not match in/, so no further run appears.
    assert [r.id for r in _runs(trigger)] == [run.id]


@pytest.mark.sandbox
def test_a_trigger_never_fires_on_its_own_commits(repo: Repository, seed: Callable[..., str]) -> None:
    trigger = repo.sandbox_triggers.create(
        name="everything",
        conditions=[{"type": "prefix", "prefix": ""}],
        sandbox_config={"image": "i", "command": ["sh", "-c", "date +%s%N > /sandbox/stamp.txt"]},
    )
    seed({"x.txt": b"x"})
    run = _wait_for_runs(trigger, 1)[-1]  # newest first: the sandbox may already have committed
    assert run.status == "created"
    final = repo.sandboxes.get(run.sandbox_id or "").wait(timeout=60)
    assert final.is_committed
    newest, first = _wait_for_runs(trigger, 2)
    assert (newest.status, newest.reason, newest.sandbox_id) == ("skipped", "trigger_loop", None)
    assert newest.commit_id == final.commit_id
    assert first.id == run.id


@pytest.mark.sandbox
def test_diff_types_and_disabled_triggers(repo: Repository, seed: Callable[..., str]) -> None:
    command = {"image": "i", "command": ["true"]}
    on_remove = repo.sandbox_triggers.create(
        name="removed",
        conditions=[{"type": "path_exact", "path": "a.txt", "diff_type": "removed"}],
        sandbox_config=command,
    )
    on_change = repo.sandbox_triggers.create(
        name="changed",
        conditions=[{"type": "path_exact", "path": "a.txt", "diff_type": "changed"}],
        sandbox_config=command,
    )
    disabled = repo.sandbox_triggers.create(
        name="off", conditions=[{"type": "prefix", "prefix": ""}], sandbox_config=command
    ).toggle(enabled=False)
    seed({"a.txt": b"1"})  # added: neither fires
    seed({"a.txt": b"2"})  # modified: "changed" fires
    [changed] = _wait_for_runs(on_change, 1)
    with repo.session() as session:
        session.objects.delete("a.txt")
        removed_commit = session.commit("remove a")
    [removed] = _wait_for_runs(on_remove, 1)
    assert removed.commit_id == removed_commit
    assert removed.matched_paths == ["a.txt"]
    assert changed.matched_paths == ["a.txt"]
    # The commits that could have fired these triggers have all been evaluated (their runs exist).
    assert len(_runs(on_change)) == 1
    assert _runs(disabled) == []
    for run in (changed, removed):
        assert run.status == "created", (run.status, run.reason)
        assert repo.sandboxes.get(run.sandbox_id or "").wait(timeout=60).has_no_changes
