"""The trigger resources over mocked REST calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone

import httpx
import pytest
import respx

from tilde.compute import Client, Repository, SandboxTriggerCondition, SandboxTriggerConfig

ENDPOINT = "http://tilde.test"
TRIGGER_ID = "7419e700-0000-4000-8000-000000000001"  # trigger ids are UUIDs
T_BASE = f"{ENDPOINT}/api/v1/organizations/acme/repositories/data/sandbox-triggers"
TRIGGER = {
    "id": TRIGGER_ID,
    "repository_id": "r1",
    "name": "on-csv",
    "description": "",
    "enabled": True,
    "conditions": [{"type": "prefix", "prefix": "in/", "diff_type": "any"}],
    "sandbox_config": {"image": "python:3.12", "command": ["python", "x.py"], "timeout_seconds": 60},
    "run_as": None,
    "created_by": "u1",
    "created_at": "2026-05-14T10:00:00.123456789Z",
    "updated_at": "2026-05-14T10:00:00Z",
}


@pytest.fixture
def repo() -> Iterator[Repository]:
    with Client(endpoint_url=ENDPOINT, api_key="tuk-test", max_retries=0) as client:
        yield client.repository("acme/data")


def test_create_sends_dicts_verbatim_and_parses_the_trigger(repo: Repository) -> None:
    with respx.mock() as router:
        route = router.post(T_BASE).mock(return_value=httpx.Response(201, json=TRIGGER))
        trigger = repo.sandbox_triggers.create(
            name="on-csv",
            conditions=[{"type": "prefix", "prefix": "in/"}],
            sandbox_config={"image": "python:3.12", "command": ["python", "x.py"]},
        )
    assert json.loads(route.calls[0].request.content) == {
        "name": "on-csv",
        "conditions": [{"type": "prefix", "prefix": "in/"}],
        "sandbox_config": {"image": "python:3.12", "command": ["python", "x.py"]},
    }
    assert trigger.conditions == [SandboxTriggerCondition(type="prefix", prefix="in/", diff_type="any")]
    assert trigger.sandbox_config == SandboxTriggerConfig(
        image="python:3.12", command=["python", "x.py"], timeout_seconds=60
    )
    assert trigger.created_at == datetime(2026, 5, 14, 10, 0, 0, 123456, tzinfo=timezone.utc)
    assert trigger.run_as is None
    assert repr(trigger) == "SandboxTrigger(id='7419e700-0000-4000-8000-000000000001', name='on-csv')"


def test_typed_conditions_and_config_are_serialised(repo: Repository) -> None:
    with respx.mock() as router:
        route = router.post(T_BASE).mock(return_value=httpx.Response(201, json=TRIGGER))
        repo.sandbox_triggers.create(
            name="n",
            conditions=[SandboxTriggerCondition(type="path_exact", path="a.csv", diff_type="added")],
            sandbox_config=SandboxTriggerConfig(image="i", env_vars={"K": "v"}),
            description="d",
            run_as={"type": "agent", "id": "a1"},
        )
    assert json.loads(route.calls[0].request.content) == {
        "name": "n",
        "conditions": [{"type": "path_exact", "path": "a.csv", "diff_type": "added"}],
        "sandbox_config": {"image": "i", "env_vars": {"K": "v"}},
        "description": "d",
        "run_as": {"type": "agent", "id": "a1"},
    }


def test_update_sends_only_given_fields_and_returns_a_new_object(repo: Repository) -> None:
    with respx.mock() as router:
        router.get(f"{T_BASE}/{TRIGGER_ID}").mock(return_value=httpx.Response(200, json=TRIGGER))
        put = router.put(f"{T_BASE}/{TRIGGER_ID}").mock(
            return_value=httpx.Response(200, json={**TRIGGER, "name": "renamed"})
        )
        patch = router.patch(f"{T_BASE}/{TRIGGER_ID}").mock(
            return_value=httpx.Response(200, json={**TRIGGER, "enabled": False})
        )
        trigger = repo.sandbox_triggers.get(TRIGGER_ID)
        renamed = trigger.update(name="renamed")
        disabled = trigger.toggle(enabled=False)
    assert json.loads(put.calls[0].request.content) == {"name": "renamed"}
    assert json.loads(patch.calls[0].request.content) == {"enabled": False}
    assert (trigger.name, renamed.name) == ("on-csv", "renamed")
    assert (trigger.enabled, disabled.enabled) == (True, False)


def test_refresh_mutates_in_place(repo: Repository) -> None:
    with respx.mock() as router:
        router.post(T_BASE).mock(return_value=httpx.Response(201, json=TRIGGER))
        router.get(f"{T_BASE}/{TRIGGER_ID}").mock(
            return_value=httpx.Response(200, json={**TRIGGER, "description": "new"})
        )
        trigger = repo.sandbox_triggers.create(name="n", conditions=[], sandbox_config={"image": "i"})
        assert trigger.refresh() is trigger
    assert trigger.description == "new"


def test_runs_list_and_delete(repo: Repository) -> None:
    run = {
        "id": "run1",
        "trigger_id": TRIGGER_ID,
        "commit_id": "c1",
        "status": "created",
        "reason": "",
        "sandbox_id": "s1",
        "matched_paths": ["in/a.csv"],
    }
    with respx.mock() as router:
        router.get(f"{T_BASE}/{TRIGGER_ID}").mock(return_value=httpx.Response(200, json=TRIGGER))
        runs = router.get(f"{T_BASE}/{TRIGGER_ID}/runs").mock(
            return_value=httpx.Response(
                200, json={"results": [run, {**run, "id": "run0", "status": "skipped", "sandbox_id": None}]}
            )
        )
        delete = router.delete(f"{T_BASE}/{TRIGGER_ID}").mock(return_value=httpx.Response(204))
        trigger = repo.sandbox_triggers.get(TRIGGER_ID)
        items = list(trigger.runs.list(page_size=10))
        trigger.delete()
    assert runs.calls[0].request.url.params["amount"] == "10"
    assert [(r.id, r.status, r.sandbox_id) for r in items] == [
        ("run1", "created", "s1"),
        ("run0", "skipped", None),
    ]
    assert items[0].matched_paths == ["in/a.csv"]
    assert repr(items[0]) == "SandboxTriggerRun(id='run1', status='created')"
    assert delete.call_count == 1
    runs_path = f"/organizations/acme/repositories/data/sandbox-triggers/{TRIGGER_ID}/runs"
    assert repr(trigger.runs) == f"SandboxTriggerRuns(path={runs_path!r})"
    assert repr(repo.sandbox_triggers) == "SandboxTriggers(acme/data)"


def test_value_type_reprs_show_only_non_defaults() -> None:
    assert (
        repr(SandboxTriggerCondition(type="prefix", prefix="a/"))
        == "SandboxTriggerCondition(type='prefix', prefix='a/')"
    )
    assert repr(SandboxTriggerConfig(image="i")) == "SandboxTriggerConfig(image='i')"
    assert SandboxTriggerConfig.from_dict({"image": "i", "timeout_seconds": True}).timeout_seconds is None
