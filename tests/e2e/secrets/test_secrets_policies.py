"""Secrets under policies: each route needs its action, agent-scoped ones can be limited by agent name."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from secrets_helpers import agent_secrets_url, make_agent, secrets_url


@pytest.fixture
def as_agent(server: Any, api: httpx.Client, org_name: str) -> Any:
    """Make an agent with the given inline policy and return a client authenticated as it."""
    clients: list[httpx.Client] = []

    def make(name: str, policy: str) -> httpx.Client:
        agent = make_agent(api, org_name, name)
        updated = api.put(f"/organizations/{org_name}/agents/{name}", json={"inline_policy": policy})
        assert updated.status_code == 200, updated.text
        client = httpx.Client(
            base_url=server.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {agent['token']}"}
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _forbidden(response: httpx.Response, action: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "forbidden"
    assert action in response.json()["message"]


def test_a_reader_reads_secrets_but_cannot_write_them(
    api: httpx.Client, as_agent: Any, repo_path: str
) -> None:
    url = secrets_url(repo_path)
    assert api.put(f"{url}/K", json={"value": "v"}).status_code == 200
    reader = as_agent("reader", "ListSecrets()\nGetSecret()")
    assert [s["key"] for s in reader.get(url).json()["results"]] == ["K"]
    assert reader.get(f"{url}/K").json()["value"] == "v"
    _forbidden(reader.put(f"{url}/K", json={"value": "changed"}), "PutSecret")
    _forbidden(reader.delete(f"{url}/K"), "DeleteSecret")
    lister = as_agent("lister", "ListSecrets()")
    assert lister.get(url).status_code == 200
    _forbidden(lister.get(f"{url}/K"), "GetSecret")
    assert api.get(f"{url}/K").json()["value"] == "v"  # unchanged


def test_agent_scoped_grants_name_the_agent(api: httpx.Client, as_agent: Any, org_name: str) -> None:
    make_agent(api, org_name, "target")
    make_agent(api, org_name, "elsewhere")
    writer = as_agent("writer", 'PutSecret(agent="target")\nGetSecret(agent="target")')
    target = agent_secrets_url(org_name, "target")
    assert writer.put(f"{target}/K", json={"value": "v"}).status_code == 200
    assert writer.get(f"{target}/K").json()["value"] == "v"
    _forbidden(writer.put(f"{agent_secrets_url(org_name, 'elsewhere')}/K", json={"value": "v"}), "PutSecret")
    _forbidden(writer.get(target), "ListSecrets")
