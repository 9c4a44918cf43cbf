"""Compute as an agent: approval-gated sandboxes, and triggers that run as another principal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tilde.compute import Client, SandboxTriggerRun

pytestmark = pytest.mark.sandbox


@pytest.fixture
def agent(api: httpx.Client, org_name: str) -> dict[str, Any]:
    created = api.post(f"/organizations/{org_name}/agents", json={"name": "robot", "description": ""})
    assert created.status_code == 201, created.text
    # Sandboxes, sessions and reads: what the built-in ReadWrite policy grants.
    policies = api.get(f"/organizations/{org_name}/policies").json()["results"]
    read_write = next(p["id"] for p in policies if p["name"] == "ReadWrite")
    attach = {"principal_type": "agent", "principal_id": created.json()["id"]}
    assert (
        api.post(f"/organizations/{org_name}/policies/{read_write}/attachments", json=attach).status_code
        == 201
    )
    key = api.post(f"/organizations/{org_name}/agents/robot/auth/keys", json={"name": "k"})
    assert key.status_code == 201, key.text
    return {**created.json(), "token": key.json()["token"]}


@pytest.fixture
def guarded_repo(api: httpx.Client, org_name: str) -> str:
    body = {"name": "guarded", "visibility": "private", "agent_commits_require_approval": True}
    assert api.post(f"/organizations/{org_name}/repositories", json=body).status_code == 201
    return f"{org_name}/guarded"


@pytest.fixture
def agent_client(server: Any, agent: dict[str, Any]) -> Iterator[Client]:
    with Client(endpoint_url=server.endpoint_url, api_key=agent["token"]) as client:
        yield client


def test_agent_execute_waits_for_approval_with_a_warning(agent_client: Client, guarded_repo: str) -> None:
    repo = agent_client.repository(guarded_repo)
    with pytest.warns(UserWarning, match="Approval required") as warned:
        result = repo.execute("echo proposal > /sandbox/proposal.txt")
    assert result.exit_code == 0
    [sandbox] = list(repo.sandboxes.list())
    status = sandbox.status()
    assert status.is_awaiting_approval
    assert status.web_url
    assert status.web_url in str(warned[0].message)
    assert list(repo.commits.list()) == []


def _wait_for_run(client: Client, repo_path: str) -> SandboxTriggerRun:
    [trigger] = list(client.repository(repo_path).sandbox_triggers.list())
    deadline = time.monotonic() + 60
    while True:
        runs = list(trigger.runs.list())
        if runs and runs[0].status != "pending":  # a run is recorded before its sandbox starts
            return runs[0]
        assert time.monotonic() < deadline, "the trigger did not run"
        time.sleep(0.05)


def test_trigger_runs_as_its_run_as_agent(
    client: Client, api: httpx.Client, repo_path: str, agent: dict[str, Any]
) -> None:
    repo = client.repository(repo_path)
    repo.sandbox_triggers.create(
        name="as-robot",
        conditions=[{"type": "path_exact", "path": "go.txt"}],
        sandbox_config={"image": "i", "command": ["sh", "-c", "echo done > /sandbox/done.txt"]},
        run_as={"type": "agent", "id": agent["id"]},
    )
    with repo.session() as session:
        session.objects.put("go.txt", b"go")
        session.commit("go")
    run = _wait_for_run(client, repo_path)
    assert run.status == "created", run.reason
    final = repo.sandboxes.get(run.sandbox_id or "").wait(timeout=60)
    assert final.is_committed, final
    commit = repo.commits.get(final.commit_id or "")
    assert (commit.committer_type, commit.committer) == ("agent", "robot")


def test_trigger_of_a_deleted_agent_records_a_failed_run(
    client: Client, api: httpx.Client, org_name: str, repo_path: str, agent: dict[str, Any]
) -> None:
    repo = client.repository(repo_path)
    repo.sandbox_triggers.create(
        name="orphan",
        conditions=[{"type": "prefix", "prefix": ""}],
        sandbox_config={"image": "i", "command": ["true"]},
        run_as={"type": "agent", "id": agent["id"]},
    )
    assert api.delete(f"/organizations/{org_name}/agents/robot").status_code == 204
    with repo.session() as session:
        session.objects.put("x.txt", b"x")
        session.commit("x")
    run = _wait_for_run(client, repo_path)
    assert (run.status, run.reason, run.sandbox_id) == ("failed", "principal_not_found", None)
