"""Every model the published SDK builds from dicts has a ``from_dict`` with the same call shape here.

Code written for the published client builds models itself (fixtures, caches, replays); these tests pin the
constructors' signatures and their tolerance of missing and ``null`` fields.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

import tilde
import tilde.models as m

TRIGGER = {
    "id": "t-1",
    "repository_id": "r-1",
    "name": "on-csv",
    "description": "",
    "enabled": True,
    "conditions": [{"type": "prefix", "prefix": "data/", "diff_type": "added"}, "junk"],
    "sandbox_config": {"image": "python:3.12", "command": ["python", "run.py"], "timeout_seconds": 60},
    "run_as": {"type": "agent", "id": "a-1"},
    "created_by": "u-1",
    "created_at": "2026-05-01T10:00:00Z",
    "updated_at": None,
}
RUN = {
    "id": "run-1",
    "repository_id": "r-1",
    "trigger_id": "t-1",
    "commit_id": "c-1",
    "status": "created",
    "reason": "",
    "sandbox_id": "s-1",
    "matched_paths": ["data/a.csv"],
    "created_at": "2026-05-01T10:00:00Z",
    "updated_at": "2026-05-01T10:00:01Z",
}


@pytest.fixture
def client() -> Iterator[tilde.Client]:
    with tilde.Client(api_key="tuk-test", endpoint_url="http://tilde.test") as sdk_client:
        yield sdk_client


# (class, the parameters from_dict takes before the data) — as the published client has them.
SIGNATURES = [
    (m.SourceMetadata, []),
    (m.Entry, []),
    (m.ListingEntry, []),
    (m.EntryRecord, []),
    (m.PutObjectResult, []),
    (m.CopyObjectResult, []),
    (m.GroupMember, []),
    (m.EffectiveGroup, []),
    (m.Attachment, []),
    (m.EffectivePolicy, []),
    (m.ValidationError, []),
    (m.ValidationResult, []),
    (m.SandboxTriggerCondition, []),
    (m.SandboxTriggerConfig, []),
    (m.SandboxTriggerRun, []),
    (m.Organization, ["client"]),
    (m.Member, ["client", "org"]),
    (m.Repository, ["client", "org"]),
    (m.Commit, ["client", "org", "repo"]),
    (m.Sandbox, ["client", "org", "repo"]),
    (m.SandboxTrigger, ["client", "org", "repo"]),
    (m.ImportJob, ["client", "org", "repo"]),
    (m.Connector, ["client", "org"]),
    (m.Secret, ["client", "base_path"]),
    (m.Group, ["client", "org"]),
    (m.Policy, ["client", "org"]),
    (m.Role, ["client", "org"]),
    (m.Agent, ["client", "org"]),
    (m.APIKey, ["client", "base_path"]),
]


@pytest.mark.parametrize(("cls", "leading"), SIGNATURES, ids=lambda v: getattr(v, "__name__", ""))
def test_from_dict_signature(cls: type, leading: list[str]) -> None:
    parameters = list(inspect.signature(cls.from_dict).parameters)  # type: ignore[attr-defined]
    assert parameters[:-1] == leading
    assert len(parameters) == len(leading) + 1  # then the data


def test_sandbox_trigger_from_dict(client: tilde.Client) -> None:
    trigger = m.SandboxTrigger.from_dict(client, "acme", "data", TRIGGER)
    assert isinstance(trigger, m.SandboxTrigger)
    assert (trigger.id, trigger.name, trigger.enabled, trigger.run_as) == (
        "t-1",
        "on-csv",
        True,
        {"type": "agent", "id": "a-1"},
    )
    assert trigger.conditions == [m.SandboxTriggerCondition(type="prefix", prefix="data/", diff_type="added")]
    assert trigger.sandbox_config == m.SandboxTriggerConfig(
        image="python:3.12", command=["python", "run.py"], timeout_seconds=60
    )
    assert trigger.created_at == datetime(2026, 5, 1, 10, tzinfo=timezone.utc)
    assert trigger.updated_at is None
    assert repr(trigger) == "SandboxTrigger(id='t-1', name='on-csv')"
    assert repr(trigger.runs) == (
        "SandboxTriggerRuns(path='/organizations/acme/repositories/data/sandbox-triggers/t-1/runs')"
    )


def test_sandbox_trigger_keyword_constructor_and_empty_dict(client: tilde.Client) -> None:
    built = m.SandboxTrigger(client, "acme", "data", id="t-2", name="n", enabled=True)
    assert (built.id, built.enabled, built.conditions, built.sandbox_config, built.run_as) == (
        "t-2",
        True,
        [],
        None,
        None,
    )
    empty = m.SandboxTrigger.from_dict(client, "acme", "data", {"conditions": None, "run_as": None})
    assert (empty.id, empty.enabled, empty.conditions, empty.sandbox_config) == ("", False, [], None)


def test_sandbox_trigger_run_from_dict_and_constructor() -> None:
    run = m.SandboxTriggerRun.from_dict(RUN)
    assert (run.id, run.status, run.sandbox_id, run.matched_paths) == (
        "run-1",
        "created",
        "s-1",
        ["data/a.csv"],
    )
    assert run.updated_at == datetime(2026, 5, 1, 10, 0, 1, tzinfo=timezone.utc)
    assert repr(run) == "SandboxTriggerRun(id='run-1', status='created')"
    skipped = m.SandboxTriggerRun.from_dict({"status": "skipped", "sandbox_id": None, "matched_paths": None})
    assert (skipped.sandbox_id, skipped.matched_paths, skipped.created_at) == (None, [], None)
    built = m.SandboxTriggerRun(id="r", status="pending")
    assert (built.id, built.status, built.matched_paths) == ("r", "pending", [])


def test_trigger_value_types_from_dict() -> None:
    assert m.SandboxTriggerCondition.from_dict(
        {"type": "path_exact", "path": "a"}
    ) == m.SandboxTriggerCondition(type="path_exact", path="a")
    config = m.SandboxTriggerConfig.from_dict({"image": "i", "env_vars": {"A": 1}, "command": None})
    assert (config.image, config.env_vars, config.command) == ("i", {"A": "1"}, [])


def test_repository_commit_and_sandbox_from_dict(client: tilde.Client) -> None:
    repo = m.Repository.from_dict(client, "acme", {"id": "r-1", "name": "data", "visibility": "private"})
    assert isinstance(repo, m.Repository)  # the composed handle keeps its type
    assert (repo.org, repo.name, repo.id, repo.visibility) == ("acme", "data", "r-1", "private")
    commit = m.Commit.from_dict(client, "acme", "data", {"id": "c-1", "message": "m", "parents": ["c-0"]})
    assert (commit.id, commit.message, commit.parents) == ("c-1", "m", ["c-0"])
    assert m.Sandbox.from_dict(client, "acme", "data", {"id": "s-1"}).id == "s-1"
    assert m.Sandbox.from_dict(client, "acme", "data", {"sandbox_id": "s-2"}).id == "s-2"
