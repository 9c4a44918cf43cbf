"""Organizations, members and repositories over real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tilde.server import LocalServer

ExpectError = Callable[..., dict[str, Any]]


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_org_create_get_list_delete(api: httpx.Client, assert_error: ExpectError) -> None:
    name = new_name("org")
    created = api.post("/organizations", json={"name": name, "display_name": "Acme Inc"})
    assert created.status_code == 201
    org = created.json()
    assert org["name"] == name
    assert org["display_name"] == "Acme Inc"
    assert org["id"]
    assert org["created_at"]
    assert api.get(f"/organizations/{name}").json() == org
    assert name in [o["name"] for o in api.get("/organizations").json()["results"]]
    assert_error(api.post("/organizations", json={"name": name}), 409, "already_exists")
    assert api.delete(f"/organizations/{name}").status_code == 204
    assert_error(api.get(f"/organizations/{name}"), 404, "not_found")
    assert name not in [o["name"] for o in api.get("/organizations").json()["results"]]


@pytest.mark.parametrize("name", ["", "a", "-abc", "Upper", "has_underscore", "x" * 64, "a/b", 7, None])
def test_org_name_is_validated(api: httpx.Client, assert_error: ExpectError, name: Any) -> None:
    assert_error(api.post("/organizations", json={"name": name}), 400, "invalid_name")


def test_members_list_add_remove(api: httpx.Client, org_name: str, assert_error: ExpectError) -> None:
    members = api.get(f"/organizations/{org_name}/members").json()["results"]
    assert [m["username"] for m in members] == ["admin"]
    username = new_name("user")
    added = api.post(f"/organizations/{org_name}/members", json={"username": username})
    assert added.status_code == 201
    member = added.json()
    assert set(member) == {"organization_id", "user_id", "username", "full_name", "email", "joined_at"}
    assert member["username"] == username
    assert member["organization_id"]
    assert member["joined_at"]
    usernames = {m["username"] for m in api.get(f"/organizations/{org_name}/members").json()["results"]}
    assert usernames == {"admin", username}
    assert api.delete(f"/organizations/{org_name}/members/{member['user_id']}").status_code == 204
    assert_error(api.delete(f"/organizations/{org_name}/members/{member['user_id']}"), 404)
    assert_error(api.post(f"/organizations/{org_name}/members", json={}), 400)


def test_repo_create_echoes_legacy_fields(api: httpx.Client, org_name: str) -> None:
    body = {
        "name": "legacy",
        "visibility": "public",
        "description": "old client",
        "session_max_duration_days": 3,
        "retention_days": 30,
        "unknown_field": "ignored",
    }
    created = api.post(f"/organizations/{org_name}/repositories", json=body)
    assert created.status_code == 201, created.text
    repo = created.json()
    assert set(repo) == {
        "id",
        "organization_id",
        "name",
        "description",
        "visibility",
        "retention_days",
        "session_max_duration_days",
        "agent_commits_require_approval",
        "created_by_type",
        "created_by",
        "created_at",
    }
    for key in ("visibility", "description", "session_max_duration_days", "retention_days"):
        assert repo[key] == body[key]
    assert repo["agent_commits_require_approval"] is False
    assert repo["created_by_type"] == "user"
    assert repo["organization_id"]
    assert repo["id"]
    assert api.get(f"/organizations/{org_name}/repositories/legacy").json() == repo


def test_agent_and_role_fields(api: httpx.Client, org_name: str) -> None:
    common = {
        "id",
        "organization_id",
        "name",
        "description",
        "created_by_type",
        "created_by",
        "created_by_name",
        "created_at",
        "last_used_at",
    }
    role = api.post(f"/organizations/{org_name}/roles", json={"name": "ops", "description": "operators"})
    assert role.status_code == 201, role.text
    assert set(role.json()) == common
    assert role.json()["description"] == "operators"
    agent = api.post(f"/organizations/{org_name}/agents", json={"name": "bot", "metadata": {"team": "x"}})
    assert agent.status_code == 201, agent.text
    assert set(agent.json()) == common | {"metadata", "inline_policy", "inline_policy_updated_at"}
    assert agent.json()["metadata"] == {"team": "x"}
    assert api.get(f"/organizations/{org_name}/agents/bot").json() == agent.json()


def test_repo_update_is_partial(api: httpx.Client, repo_path: str, assert_error: ExpectError) -> None:
    org, name = repo_path.split("/")
    url = f"/organizations/{org}/repositories/{name}"
    updated = api.put(url, json={"description": "new", "agent_commits_require_approval": True})
    assert updated.status_code == 200
    assert updated.json()["description"] == "new"
    assert updated.json()["agent_commits_require_approval"] is True
    assert updated.json()["visibility"] == "private"
    again = api.put(url, json={"session_max_duration_days": 2, "visibility": "public"}).json()
    assert again["description"] == "new"
    assert again["session_max_duration_days"] == 2
    assert again["agent_commits_require_approval"] is True
    assert again["visibility"] == "public"
    assert_error(api.put(url, json={"agent_commits_require_approval": "yes"}), 400, "invalid_field")
    assert_error(api.put(url, json={"retention_days": -1}), 400)
    assert_error(api.put(url, json={"description": 5}), 400)


def test_repo_duplicate_and_bad_names(api: httpx.Client, org_name: str, assert_error: ExpectError) -> None:
    url = f"/organizations/{org_name}/repositories"
    assert api.post(url, json={"name": "dup"}).status_code == 201
    assert_error(api.post(url, json={"name": "dup"}), 409, "already_exists")
    for bad in ("", "UPPER", "a b", "../x", None):
        assert_error(api.post(url, json={"name": bad}), 400, "invalid_name")
    assert_error(api.post("/organizations/no-such-org-here/repositories", json={"name": "x1"}), 404)


def test_repo_soft_delete_frees_the_name(
    api: httpx.Client, repo_path: str, assert_error: ExpectError
) -> None:
    org, name = repo_path.split("/")
    first = api.get(f"/organizations/{org}/repositories/{name}").json()
    assert api.delete(f"/organizations/{org}/repositories/{name}").status_code == 204
    assert_error(api.get(f"/organizations/{org}/repositories/{name}"), 404, "not_found")
    assert_error(api.post(f"/organizations/{org}/repositories/{name}/sessions"), 404)
    recreated = api.post(f"/organizations/{org}/repositories", json={"name": name})
    assert recreated.status_code == 201
    assert recreated.json()["id"] != first["id"]
    assert api.get(f"/organizations/{org}/repositories/{name}/log").json()["results"] == []


def test_repo_list_paginates(api: httpx.Client, org_name: str, assert_error: ExpectError) -> None:
    url = f"/organizations/{org_name}/repositories"
    names = sorted(f"r{i}-{uuid.uuid4().hex[:4]}" for i in range(5))
    for name in names:
        assert api.post(url, json={"name": name}).status_code == 201
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"amount": 2}
        if after is not None:
            params["after"] = after
        page = api.get(url, params=params).json()
        pages += 1
        seen += [r["name"] for r in page["results"]]
        if not page["pagination"]["has_more"]:
            break
        after = page["pagination"]["next_offset"]
        assert isinstance(after, str)
    assert seen == names
    assert pages == 3
    for bad in ("0", "1001", "-1", "ten"):
        assert_error(api.get(url, params={"amount": bad}), 400, "invalid_parameter")
    assert len(api.get(url, params={"amount": 1000}).json()["results"]) == 5


def test_auth_me_names_users_agents_and_their_organizations(
    api: httpx.Client, org_name: str, server: LocalServer
) -> None:
    me = api.get("/auth/me").json()
    assert me["user"]["username"] == "admin"
    expected = {"type": "user", "id": me["user"]["id"], "name": "admin", "organization_id": None}
    assert me["principal"] == expected
    assert org_name in {o["name"] for o in me["organizations"]}
    assert me["has_password"] is False

    made = api.post(f"/organizations/{org_name}/agents", json={"name": "whoami", "description": ""})
    assert made.is_success, made.text
    token = api.post(f"/organizations/{org_name}/agents/whoami/auth/keys", json={"name": "k"}).json()["token"]
    agent = httpx.get(
        f"{server.endpoint_url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert agent["user"] is None
    assert agent["principal"]["type"] == "agent"
    assert agent["principal"]["name"] == "whoami"
    assert [o["name"] for o in agent["organizations"]] == [org_name]
