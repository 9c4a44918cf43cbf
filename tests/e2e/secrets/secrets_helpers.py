"""Helpers for the secrets end-to-end tests (a module of its own: ``conftest`` names clash)."""

from __future__ import annotations

from typing import Any

import httpx

#: The inline policy of test agents: everything (their creator, an owner, caps them anyway).
ALLOW_ALL = "*()"


def secrets_url(repo_path: str) -> str:
    org, repo = repo_path.split("/")
    return f"/organizations/{org}/repositories/{repo}/secrets"


def agent_secrets_url(org_name: str, agent: str) -> str:
    return f"/organizations/{org_name}/agents/{agent}/secrets"


def make_agent(api: httpx.Client, org_name: str, name: str) -> dict[str, Any]:
    """Create an agent allowed everything its creator may do, with one API key (``token``)."""
    created = api.post(f"/organizations/{org_name}/agents", json={"name": name, "description": ""})
    assert created.status_code == 201, created.text
    updated = api.put(f"/organizations/{org_name}/agents/{name}", json={"inline_policy": ALLOW_ALL})
    assert updated.status_code == 200, updated.text
    key = api.post(f"/organizations/{org_name}/agents/{name}/auth/keys", json={"name": "k"})
    assert key.status_code == 201, key.text
    return {**created.json(), "token": key.json()["token"]}
