"""Secrets over the wire at both scopes (CONTRACT §4.8): round trips, errors, caching headers, cleanup."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from secrets_helpers import agent_secrets_url, make_agent, secrets_url

import tilde
from tilde.core import NotFoundError


@pytest.fixture
def client(server: Any) -> Any:
    with tilde.Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as c:
        yield c


def test_repository_secrets_round_trip_with_the_sdk(client: Any, repo_path: str) -> None:
    secrets = client.repository(repo_path).secrets
    created = secrets.create("API_TOKEN", "s3cr3t-value")
    assert created.name == "API_TOKEN"
    secrets.create("a_lower", "x")
    listed = list(secrets.list())
    assert [s.name for s in listed] == ["API_TOKEN", "a_lower"]  # by key
    assert listed[0].created_by_type == "user"
    assert listed[0].created_at is not None
    assert listed[0].value == "s3cr3t-value"  # fetched lazily by a GET
    assert secrets.get("API_TOKEN").value == "s3cr3t-value"
    secrets.delete("API_TOKEN")
    with pytest.raises(NotFoundError):
        secrets.get("API_TOKEN")
    with pytest.raises(NotFoundError):
        secrets.delete("API_TOKEN")
    with pytest.raises(ValueError, match="invalid secret key"):  # refused by the SDK before any request
        secrets.create("1-starts-with-a-digit", "x")


def test_list_never_carries_values_and_replace_keeps_created_at(api: httpx.Client, repo_path: str) -> None:
    url = secrets_url(repo_path)
    assert api.put(f"{url}/TOKEN", json={"value": "first-value"}).json() == {"key": "TOKEN"}
    [before] = api.get(url).json()["results"]
    assert set(before) == {"key", "created_by_type", "created_by", "created_at", "updated_at"}
    assert "first-value" not in api.get(url).text
    deadline = time.monotonic() + 5
    while True:  # timestamps have microseconds; make sure the clock moved
        replaced = api.put(f"{url}/TOKEN", json={"value": "second-value"})
        assert replaced.status_code == 200, replaced.text
        [after] = api.get(url).json()["results"]
        if after["updated_at"] != before["updated_at"] or time.monotonic() > deadline:
            break
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] > before["updated_at"]
    assert api.get(f"{url}/TOKEN").json() == {"key": "TOKEN", "value": "second-value"}


def test_single_get_is_not_cached(
    api: httpx.Client, repo_path: str, agent: dict[str, Any], org_name: str
) -> None:
    for url in (secrets_url(repo_path), agent_secrets_url(org_name, agent["name"])):
        assert api.put(f"{url}/K", json={"value": "v"}).status_code == 200
        got = api.get(f"{url}/K")
        assert got.status_code == 200
        assert got.headers["cache-control"] == "no-store"
        assert got.headers["pragma"] == "no-cache"


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"message", "code", "request_id"}
    return body


@pytest.mark.parametrize("scope", ["repo", "agent"])
def test_bad_requests_answer_4xx(
    api: httpx.Client, repo_path: str, org_name: str, agent: dict[str, Any], scope: str
) -> None:
    url = secrets_url(repo_path) if scope == "repo" else agent_secrets_url(org_name, agent["name"])
    _error(api.put(f"{url}/K", json={"value": ""}), 400)
    _error(api.put(f"{url}/K", json={"value": 5}), 400)
    _error(api.put(f"{url}/K", json={}), 400)
    _error(api.put(f"{url}/K", json=["value"]), 400)
    _error(api.put(f"{url}/K", content=b"{not json"), 400)
    _error(api.put(f"{url}/K"), 400)
    _error(api.put(f"{url}/bad.key", json={"value": "v"}), 400)
    _error(api.put(f"{url}/{'K' * 257}", json={"value": "v"}), 400)
    assert api.put(f"{url}/{'K' * 256}", json={"value": "v"}).status_code == 200
    _error(api.put(f"{url}/BIG", json={"value": "x" * (64 * 1024)}), 413)
    assert api.put(f"{url}/LARGE", json={"value": "x" * (60 * 1024)}).status_code == 200
    assert len(api.get(f"{url}/LARGE").json()["value"]) == 60 * 1024
    _error(api.get(f"{url}/MISSING"), 404)
    _error(api.delete(f"{url}/MISSING"), 404)
    assert [s["key"] for s in api.get(url).json()["results"]] == ["K" * 256, "LARGE"]


def test_unknown_owners_answer_404(api: httpx.Client, org_name: str, repo_path: str) -> None:
    _error(api.get(f"/organizations/{org_name}/repositories/nope-repo/secrets"), 404)
    _error(api.put(f"/organizations/{org_name}/agents/nobody/secrets/K", json={"value": "v"}), 404)
    _error(api.get("/organizations/no-such-org-x/agents/nobody/secrets"), 404)


def test_agent_and_repository_secrets_are_separate(
    api: httpx.Client, repo_path: str, org_name: str, agent: dict[str, Any]
) -> None:
    assert api.put(f"{secrets_url(repo_path)}/SHARED", json={"value": "repo-value"}).status_code == 200
    agent_url = agent_secrets_url(org_name, agent["name"])
    assert api.put(f"{agent_url}/SHARED", json={"value": "agent-value"}).status_code == 200
    assert api.get(f"{secrets_url(repo_path)}/SHARED").json()["value"] == "repo-value"
    assert api.get(f"{agent_url}/SHARED").json()["value"] == "agent-value"
    [entry] = api.get(agent_url).json()["results"]
    assert entry["key"] == "SHARED"


def test_outsiders_are_refused(raw: httpx.Client, server: Any, repo_path: str, org_name: str) -> None:
    outsider = server.create_api_key("user", f"outsider-{org_name}")
    headers = {"Authorization": f"Bearer {outsider}"}
    _error(raw.get(secrets_url(repo_path), headers=headers), 403)
    _error(raw.put(f"{secrets_url(repo_path)}/K", json={"value": "v"}, headers=headers), 403)
    _error(raw.get(secrets_url(repo_path)), 401)


def _stored_rows(server: Any, scope: str, owner_id: str) -> int:
    return len(server.app.state.secret_store.list_secrets(scope, owner_id))


@pytest.mark.backends("local", "postgres")  # counts rows through the in-process server's secret store
def test_deleting_an_agent_drops_its_secrets(api: httpx.Client, server: Any, org_name: str) -> None:
    agent = make_agent(api, org_name, "short-lived")
    url = agent_secrets_url(org_name, "short-lived")
    assert api.put(f"{url}/K", json={"value": "v"}).status_code == 200
    assert _stored_rows(server, "agent", agent["id"]) == 1
    assert api.delete(f"/organizations/{org_name}/agents/short-lived").status_code == 204
    assert _stored_rows(server, "agent", agent["id"]) == 0
    again = make_agent(api, org_name, "short-lived")  # same name, new agent: starts empty
    assert again["id"] != agent["id"]
    assert api.get(url).json()["results"] == []


@pytest.mark.backends("local", "postgres")  # counts rows through the in-process server's secret store
def test_deleting_a_repository_or_its_organization_drops_its_secrets(
    api: httpx.Client, server: Any, org_name: str, repo_path: str
) -> None:
    org, name = repo_path.split("/")
    repo_id = api.get(f"/organizations/{org}/repositories/{name}").json()["id"]
    assert api.put(f"{secrets_url(repo_path)}/K", json={"value": "v"}).status_code == 200
    assert _stored_rows(server, "repo", repo_id) == 1
    assert api.delete(f"/organizations/{org}/repositories/{name}").status_code == 204
    assert _stored_rows(server, "repo", repo_id) == 0

    other = api.post(f"/organizations/{org}/repositories", json={"name": "other-repo"}).json()
    assert api.put(f"{secrets_url(f'{org}/other-repo')}/K", json={"value": "v"}).status_code == 200
    assert _stored_rows(server, "repo", other["id"]) == 1
    assert api.delete(f"/organizations/{org}").status_code == 204
    assert _stored_rows(server, "repo", other["id"]) == 0
