"""Roles, agents, their API keys and agent secrets on the wire (CONTRACT 4.8, 4.10, #58-#65, #85-#101)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import respx
from admin_helpers import ORG, body_of, query_of

from tilde.admin import Agent, Agents, APIKey, APIKeys, Organization, Role, Roles, Secret, Secrets

ROLE = {
    "id": "r-1",
    "organization_id": "org-1",
    "name": "ci-deployer",
    "description": "CI/CD pipeline",
    "created_by_type": "user",
    "created_by": "u-1",
    "created_by_name": "admin",
    "created_at": "2026-05-01T10:00:00Z",
    "last_used_at": None,
}
AGENT = {
    "id": "a-1",
    "organization_id": "org-1",
    "name": "data-pipeline",
    "description": "Nightly pipeline",
    "metadata": {"env": "prod"},
    "inline_policy": "GetObject()\n",
    "inline_policy_updated_at": "2026-05-01T12:00:00Z",
    "created_by_type": "role",
    "created_by": "r-1",
    "created_by_name": "ci-deployer",
    "created_at": "2026-05-01T10:00:00Z",
    "last_used_at": "2026-05-02T10:00:00Z",
}
KEY = {
    "id": "k-1",
    "user_id": "a-1",
    "name": "pipeline-key",
    "description": "",
    "token_hint": "wxyz",
    "created_at": "2026-05-01T10:00:00Z",
    "last_used_at": None,
    "revoked_at": None,
}
AGENT_KEYS = f"{ORG}/agents/data-pipeline/auth/keys"
ROLE_KEYS = f"{ORG}/roles/ci-deployer/auth/keys"


# -- roles -------------------------------------------------------------------------------------------------


def test_org_roles_and_agents_are_new_collections(org: Organization) -> None:
    assert isinstance(org.roles, Roles)
    assert org.roles is not org.roles
    assert isinstance(org.agents, Agents)
    assert org.agents is not org.agents
    assert repr(org.roles) == "Roles(org='acme')"
    assert repr(org.agents) == "Agents(org='acme')"


def test_roles_list_get_create_delete(org: Organization, router: respx.MockRouter) -> None:
    listing = router.get(f"{ORG}/roles").respond(json={"results": [ROLE], "pagination": {"has_more": False}})
    get = router.get(f"{ORG}/roles/ci-deployer").respond(json=ROLE)
    create = router.post(f"{ORG}/roles").respond(201, json=ROLE)
    delete = router.delete(f"{ORG}/roles/ci-deployer").respond(204)

    [listed] = org.roles.list(after="a", amount=5)
    assert query_of(listing.calls[0]) == {"amount": "5", "after": "a"}  # the cap of 5 cuts the page size
    role = org.roles.get("ci-deployer")
    assert isinstance(role, Role)
    assert get.call_count == 1
    assert (role.id, role.name, role.description, role.organization_id) == (
        "r-1",
        "ci-deployer",
        "CI/CD pipeline",
        "org-1",
    )
    assert (role.created_by_type, role.created_by, role.created_by_name) == ("user", "u-1", "admin")
    assert role.created_at == datetime(2026, 5, 1, 10, tzinfo=timezone.utc)
    assert role.last_used_at is None
    assert repr(listed) == "Role('ci-deployer')"

    org.roles.create("ci-deployer", description="CI/CD pipeline")
    org.roles.create("ci-deployer")
    # The description is always sent, even empty (CONTRACT #86).
    assert body_of(create.calls[0]) == {"name": "ci-deployer", "description": "CI/CD pipeline"}
    assert body_of(create.calls[1]) == {"name": "ci-deployer", "description": ""}

    org.roles.delete("ci-deployer")
    role.delete()
    assert delete.call_count == 2


def test_role_api_keys(org: Organization, router: respx.MockRouter) -> None:
    create = router.post(ROLE_KEYS).respond(
        201, json={"token": "trk-secret-token", "id": "k-2", "name": "deploy", "description": ""}
    )
    role = Role.from_dict(org._client, "acme", ROLE)
    keys = role.api_keys
    assert isinstance(keys, APIKeys)
    assert repr(keys) == f"APIKeys(path='{ROLE_KEYS}')"
    created = keys.create("deploy")
    assert created.token == "trk-secret-token"
    assert body_of(create.calls[0]) == {"name": "deploy"}


# -- agents ------------------------------------------------------------------------------------------------


def test_agent_fields(org: Organization, router: respx.MockRouter) -> None:
    router.get(f"{ORG}/agents/data-pipeline").respond(json=AGENT)
    agent = org.agents.get("data-pipeline")
    assert isinstance(agent, Agent)
    assert (agent.id, agent.name, agent.description) == ("a-1", "data-pipeline", "Nightly pipeline")
    assert agent.metadata == {"env": "prod"}
    assert agent.inline_policy == "GetObject()\n"
    assert agent.inline_policy_updated_at == datetime(2026, 5, 1, 12, tzinfo=timezone.utc)
    assert (agent.created_by_type, agent.created_by, agent.created_by_name) == ("role", "r-1", "ci-deployer")
    assert agent.last_used_at == datetime(2026, 5, 2, 10, tzinfo=timezone.utc)
    assert repr(agent) == "Agent('data-pipeline')"


def test_agent_null_metadata_becomes_an_empty_dict(org: Organization) -> None:
    agent = Agent.from_dict(org._client, "acme", {**AGENT, "metadata": None, "inline_policy": None})
    assert (agent.metadata, agent.inline_policy) == ({}, "")
    assert Agent(org._client, "acme").metadata == {}


def test_agents_list_is_paginated(org: Organization, router: respx.MockRouter) -> None:
    route = router.get(f"{ORG}/agents")
    route.side_effect = [
        respx.MockResponse(
            200, json={"results": [AGENT], "pagination": {"has_more": True, "next_offset": "d"}}
        ),
        respx.MockResponse(
            200, json={"results": [{**AGENT, "name": "e"}], "pagination": {"has_more": False}}
        ),
    ]
    assert [a.name for a in org.agents.list(page_size=1)] == ["data-pipeline", "e"]
    assert query_of(route.calls[1]) == {"amount": "1", "after": "d"}


def test_agents_create_sends_description_always_and_metadata_when_given(
    org: Organization, router: respx.MockRouter
) -> None:
    route = router.post(f"{ORG}/agents").respond(201, json=AGENT)
    agent = org.agents.create("data-pipeline", description="Nightly pipeline", metadata={"env": "prod"})
    org.agents.create("data-pipeline")
    assert agent.id == "a-1"
    assert body_of(route.calls[0]) == {
        "name": "data-pipeline",
        "description": "Nightly pipeline",
        "metadata": {"env": "prod"},
    }
    assert body_of(route.calls[1]) == {"name": "data-pipeline", "description": ""}


def test_agents_create_has_no_inline_policy_argument(org: Organization) -> None:
    with pytest.raises(TypeError):
        org.agents.create("x", inline_policy="GetObject()")  # type: ignore[call-arg]


def test_agent_update_returns_a_new_agent(org: Organization, router: respx.MockRouter) -> None:
    route = router.put(f"{ORG}/agents/data-pipeline").respond(json={**AGENT, "metadata": {"env": "staging"}})
    agent = Agent.from_dict(org._client, "acme", AGENT)
    updated = agent.update(metadata={"env": "staging"})
    assert updated is not agent
    assert (updated.metadata, agent.metadata) == ({"env": "staging"}, {"env": "prod"})
    assert body_of(route.calls[0]) == {"metadata": {"env": "staging"}}
    agent.update(inline_policy="")  # "" clears the inline policy, so it must be sent
    assert body_of(route.calls[1]) == {"inline_policy": ""}
    agent.update(description="d", metadata={}, inline_policy="ListRepositories()\n")
    assert body_of(route.calls[2]) == {
        "description": "d",
        "metadata": {},
        "inline_policy": "ListRepositories()\n",
    }


def test_agent_delete(org: Organization, router: respx.MockRouter) -> None:
    route = router.delete(f"{ORG}/agents/data-pipeline").respond(204)
    org.agents.delete("data-pipeline")
    Agent.from_dict(org._client, "acme", AGENT).delete()
    assert route.call_count == 2


# -- API keys ----------------------------------------------------------------------------------------------


def test_api_key_create_shows_the_token_once(org: Organization, router: respx.MockRouter) -> None:
    router.post(AGENT_KEYS).respond(
        201,
        json={
            "token": "tak-0123456789abcdef",
            "id": "k-1",
            "name": "pipeline-key",
            "description": "",
            "token_hint": "cdef",
            "created_at": "2026-05-01T10:00:00Z",
        },
    )
    router.get(f"{AGENT_KEYS}/k-1").respond(json=KEY)
    keys = Agent.from_dict(org._client, "acme", AGENT).api_keys
    created = keys.create("pipeline-key")
    assert isinstance(created, APIKey)
    assert (created.id, created.token, created.token_hint) == ("k-1", "tak-0123456789abcdef", "cdef")
    assert created.created_at == datetime(2026, 5, 1, 10, tzinfo=timezone.utc)
    assert repr(created) == "APIKey(name='pipeline-key', id='k-1')"
    assert "tak-" not in repr(created)
    fetched = keys.get("k-1")
    assert (fetched.token, fetched.token_hint) == ("", "wxyz")


def test_api_keys_list_is_paginated_and_tolerates_a_missing_pagination(
    org: Organization, router: respx.MockRouter
) -> None:
    route = router.get(AGENT_KEYS).respond(
        json={"results": [KEY, {**KEY, "revoked_at": "2026-05-03T00:00:00Z"}]}
    )
    active, revoked = APIKeys(org._client, AGENT_KEYS).list(page_size=10)
    assert query_of(route.calls[0]) == {"amount": "10"}
    assert active.revoked_at is None
    assert revoked.revoked_at == datetime(2026, 5, 3, tzinfo=timezone.utc)


def test_api_key_revoke_delete_and_collection_delete(org: Organization, router: respx.MockRouter) -> None:
    route = router.delete(f"{AGENT_KEYS}/k-1").respond(204)
    key = APIKey.from_dict(org._client, AGENT_KEYS, KEY)
    key.revoke()
    key.delete()
    APIKeys(org._client, AGENT_KEYS).delete("k-1")
    assert route.call_count == 3


# -- agent secrets -----------------------------------------------------------------------------------------


def test_agent_secrets_live_under_the_agent(org: Organization, router: respx.MockRouter) -> None:
    base = f"{ORG}/agents/data-pipeline/secrets"
    put = router.put(f"{base}/OPENAI_KEY").respond(json={"key": "OPENAI_KEY"})
    listing = router.get(base).respond(json={"results": [{"key": "OPENAI_KEY", "created_by_type": "user"}]})
    secrets = Agent.from_dict(org._client, "acme", AGENT).secrets
    assert isinstance(secrets, Secrets)
    assert repr(secrets) == f"Secrets(path='{base}')"
    created = secrets.create("OPENAI_KEY", "sk-abc")
    assert isinstance(created, Secret)
    assert created.value == "sk-abc"
    assert body_of(put.calls[0]) == {"value": "sk-abc"}
    [listed] = secrets.list()
    assert (listed.name, listed.created_by_type) == ("OPENAI_KEY", "user")
    assert query_of(listing.calls[0]) == {}
