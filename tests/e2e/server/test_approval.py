"""The approval workflow: agent commits on a repository that requires approval park until a user decides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tilde.server import LocalServer

ExpectError = Callable[..., dict[str, Any]]


@pytest.fixture
def approval_repo(api: httpx.Client, org_name: str) -> str:
    created = api.post(
        f"/organizations/{org_name}/repositories",
        json={"name": "guarded", "visibility": "private", "agent_commits_require_approval": True},
    )
    assert created.status_code == 201, created.text
    assert created.json()["agent_commits_require_approval"] is True
    return f"/organizations/{org_name}/repositories/guarded"


def agent_writes(agent: httpx.Client, repo: str, path: str, data: bytes) -> str:
    session: str = agent.post(repo + "/sessions").json()["session_id"]
    staged = agent.put(repo + "/object", params={"session_id": session, "path": path}).json()
    assert httpx.put(staged["upload_url"], content=data).status_code == 200
    done = agent.post(
        repo + "/object/finalize",
        params={"session_id": session, "path": path},
        json={"upload_token": staged["upload_token"], "size_bytes": len(data)},
    )
    assert done.status_code == 201, done.text
    return session


def test_agent_commit_waits_for_a_human(
    api: httpx.Client,
    agent_client: tuple[httpx.Client, dict[str, Any]],
    approval_repo: str,
    server: LocalServer,
    org_name: str,
    assert_error: ExpectError,
) -> None:
    agent, _ = agent_client
    session = agent_writes(agent, approval_repo, "report.csv", b"a,b\n1,2\n")
    parked = agent.post(f"{approval_repo}/sessions/{session}", json={"message": "nightly report"})
    assert parked.status_code == 202, parked.text
    body = parked.json()
    assert body["approval_required"] is True
    assert body["session_id"] == session
    assert body["message"]
    approve_path = f"/api/v1{approval_repo}/sessions/{session}/approve"
    assert body["api_url"] == server.endpoint_url + approve_path
    assert session in body["web_url"]
    assert body["web_url"].startswith("http")

    assert agent.head(f"{approval_repo}/sessions/{session}/approve").status_code == 200
    assert api.get(approval_repo + "/log").json()["results"] == []
    # The parked session takes no more writes, and the agent cannot approve itself.
    assert_error(agent.put(approval_repo + "/object", params={"session_id": session, "path": "x"}), 409)
    assert_error(agent.post(f"{approval_repo}/sessions/{session}/approve", json={}), 403, "forbidden")
    pending = api.get(f"{approval_repo}/sessions/{session}/approve").json()["results"]
    assert [p["path"] for p in pending] == ["report.csv"]

    approved = api.post(f"{approval_repo}/sessions/{session}/approve", json={})
    assert approved.status_code == 200, approved.text
    commit_id = approved.json()["commit_id"]
    assert agent.head(f"{approval_repo}/sessions/{session}/approve").status_code == 404
    log = api.get(approval_repo + "/log").json()["results"]
    assert [c["id"] for c in log] == [commit_id]
    assert log[0]["message"] == "nightly report"
    assert api.get(approval_repo + "/object", params={"path": "report.csv"}).content == b"a,b\n1,2\n"
    assert_error(api.post(f"{approval_repo}/sessions/{session}/approve", json={}), 404)


def test_rollback_resolves_a_pending_approval(
    api: httpx.Client, agent_client: tuple[httpx.Client, dict[str, Any]], approval_repo: str
) -> None:
    agent, _ = agent_client
    session = agent_writes(agent, approval_repo, "x", b"x")
    assert agent.post(f"{approval_repo}/sessions/{session}", json={"message": "m"}).status_code == 202
    assert api.delete(f"{approval_repo}/sessions/{session}").status_code == 204
    assert agent.head(f"{approval_repo}/sessions/{session}/approve").status_code == 404
    assert api.get(approval_repo + "/objects").json()["results"] == []


def test_human_commits_and_unflagged_repos_are_not_parked(
    api: httpx.Client, agent_client: tuple[httpx.Client, dict[str, Any]], approval_repo: str, org_name: str
) -> None:
    agent, _ = agent_client
    session = api.post(approval_repo + "/sessions").json()["session_id"]
    assert api.post(f"{approval_repo}/sessions/{session}", json={"message": "human"}).status_code == 200
    plain = f"/organizations/{org_name}/repositories/plain"
    assert api.post(f"/organizations/{org_name}/repositories", json={"name": "plain"}).status_code == 201
    session = agent_writes(agent, plain, "y", b"y")
    committed = agent.post(f"{plain}/sessions/{session}", json={"message": "agent"})
    assert committed.status_code == 200
    commit = api.get(f"{plain}/commits/{committed.json()['commit_id']}").json()
    assert commit["committer_type"] == "agent"


def test_head_approve_for_open_and_unknown_sessions_is_404(api: httpx.Client, approval_repo: str) -> None:
    session = api.post(approval_repo + "/sessions").json()["session_id"]
    assert api.head(f"{approval_repo}/sessions/{session}/approve").status_code == 404
    unknown = "00000000-0000-4000-8000-000000000000"
    assert api.head(f"{approval_repo}/sessions/{unknown}/approve").status_code == 404


def test_agents_roles_and_keys_api(api: httpx.Client, org_name: str, assert_error: ExpectError) -> None:
    base = f"/organizations/{org_name}"
    agent = api.post(base + "/agents", json={"name": "bot", "description": "d", "metadata": {"team": "x"}})
    assert agent.status_code == 201
    assert agent.json()["metadata"] == {"team": "x"}
    assert agent.json()["created_by_type"] == "user"
    assert agent.json()["created_by_name"] == "admin"
    assert_error(api.post(base + "/agents", json={"name": "bot", "description": ""}), 409)
    assert_error(api.post(base + "/agents", json={"name": "Bad Name", "description": ""}), 400)
    updated = api.put(
        base + "/agents/bot", json={"inline_policy": "GetObject()", "description": "new"}
    ).json()
    assert updated["inline_policy"] == "GetObject()"
    assert updated["description"] == "new"
    assert updated["inline_policy_updated_at"]
    assert api.put(base + "/agents/bot", json={"inline_policy": ""}).json()["inline_policy"] == ""
    assert [a["name"] for a in api.get(base + "/agents", params={"amount": 10}).json()["results"]] == ["bot"]

    role = api.post(base + "/roles", json={"name": "ci", "description": ""})
    assert role.status_code == 201
    assert api.get(base + "/roles/ci").json()["id"] == role.json()["id"]
    keys = base + "/roles/ci/auth/keys"
    created = api.post(keys, json={"name": "deploy"}).json()
    assert created["token"].startswith("trk-")
    assert created["token_hint"] == created["token"][-4:]
    listed = api.get(keys, params={"amount": 10}).json()["results"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "token" not in listed[0]
    assert api.get(f"{keys}/{created['id']}").json()["name"] == "deploy"
    assert api.delete(f"{keys}/{created['id']}").status_code == 204
    assert api.get(f"{keys}/{created['id']}").json()["revoked_at"]
    assert_error(api.get(f"{keys}/00000000-0000-4000-8000-000000000000"), 404)
    assert api.delete(base + "/roles/ci").status_code == 204
    assert_error(api.get(base + "/roles/ci"), 404)
    assert api.delete(base + "/agents/bot").status_code == 204
    assert_error(api.get(base + "/agents/bot"), 404)
