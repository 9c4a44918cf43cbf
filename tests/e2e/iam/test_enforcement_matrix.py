"""The enforcement matrix: for every action of the catalogue, one real request.

Each case gives a member user one policy holding what the request structurally needs besides the action
under test (often nothing): the request is refused with a 403 naming the action. Then the same policy is
changed to add the action, and the same request succeeds. The change takes effect on the very next request,
which also shows the authorizer's cache being invalidated.

Three actions cannot be withheld from a member and are covered by their own tests below: every member may
list and read its organizations, and any user may create one (only agents and roles may not).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from iam_helpers import IamOrg, assert_forbidden, unique
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tilde.server.iam.actions import ACTIONS

if TYPE_CHECKING:
    from tilde.server import LocalServer


@dataclass
class Call:
    """One request, relative to ``/api/v1``; ``org`` is where the policy must live (default: the module's)."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    org: str | None = None

    def send(self, http: httpx.Client) -> httpx.Response:
        return http.request(self.method, self.path, params=self.params, json=self.json)


@dataclass
class World:
    """What the module sets up once: a repository with one committed object, and a finished sandbox."""

    iam: IamOrg
    repo: str
    commit_id: str
    sandbox_id: str
    extras: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(iam: IamOrg) -> World:
    repo = iam.repository()
    commit_id = iam.commit(repo, {"seed.txt": b"seed"})
    sandbox_id = iam.ok(iam.admin.post(f"{repo}/sandboxes", json={"image": "i", "command": ["true"]}), 201)[
        "sandbox_id"
    ]
    iam.wait_sandbox(repo, sandbox_id)
    return World(iam, repo, commit_id, sandbox_id)


Setup = Callable[[World], Call]


def _session(w: World, repo: str | None = None) -> str:
    session: str = w.iam.ok(w.iam.admin.post(f"{repo or w.repo}/sessions"), 201)["session_id"]
    return session


def _service(w: World) -> str:
    made = w.iam.admin.post(f"{w.repo}/sandboxes", json={"image": "i", "mode": "service"})
    sandbox_id: str = w.iam.ok(made, 201)["sandbox_id"]
    assert w.iam.wait_sandbox(w.repo, sandbox_id, while_="starting")["status"] == "running"
    return sandbox_id


def _trigger(w: World) -> str:
    body = {
        "name": unique("t"),
        "conditions": [{"type": "prefix", "prefix": "never/"}],
        "sandbox_config": {"image": "i"},
    }
    trigger_id: str = w.iam.ok(w.iam.admin.post(f"{w.repo}/sandbox-triggers", json=body), 201)["id"]
    return trigger_id


def _group(w: World) -> str:
    group_id: str = w.iam.ok(w.iam.admin.post(f"{w.iam.base}/groups", json={"name": unique("g")}), 201)["id"]
    return group_id


def _agent(w: World) -> str:
    name = unique("agent")
    w.iam.ok(w.iam.admin.post(f"{w.iam.base}/agents", json={"name": name, "description": ""}), 201)
    return name


def _agent_key(w: World) -> tuple[str, str]:
    name = _agent(w)
    key = w.iam.ok(w.iam.admin.post(f"{w.iam.base}/agents/{name}/auth/keys", json={"name": "k"}), 201)
    return name, key["id"]


def _secret(w: World) -> str:
    w.iam.ok(w.iam.admin.put(f"{w.repo}/secrets/TOKEN_A", json={"value": "v"}))
    return "TOKEN_A"


def _connector(w: World) -> str:
    body = {
        "name": unique("c"),
        "type": "s3",
        "source_uri": "s3://some-bucket/prefix/",
        "config": {"access_key_id": "id", "secret_access_key": "secret", "region": "us-east-1"},
    }
    connector_id: str = w.iam.ok(w.iam.admin.post(f"{w.iam.base}/connectors", json=body), 201)["id"]
    return connector_id


def _approval_pending(w: World) -> Call:
    repo = w.iam.repository(agent_commits_require_approval=True)
    _, agent = w.iam.agent(inline_policy="*()")
    session = w.iam.ok(agent.post(f"{repo}/sessions"), 201)["session_id"]
    assert w.iam.put_object(repo, session, "a.txt", b"a", agent).status_code == 201
    assert agent.post(f"{repo}/sessions/{session}", json={"message": "m"}).status_code == 202
    return Call("POST", f"{repo}/sessions/{session}/approve", json={})


def _other_org(w: World) -> Call:
    name = unique("doomed")
    w.iam.ok(w.iam.admin.post("/organizations", json={"name": name}), 201)
    return Call("DELETE", f"/organizations/{name}", org=name)


def _revert(w: World) -> Call:
    repo = w.iam.repository()
    w.iam.commit(repo, {"x.txt": b"x"})
    commit_id = w.iam.commit(repo, {"x.txt": b"changed"})
    return Call("POST", f"{repo}/commits/{commit_id}/revert", json={})


def _import_job(w: World) -> Call:
    target = w.iam.repository()
    source = w.repo.rsplit("/", 1)[1]
    body = {"source_organization": w.iam.name, "source_repository": source, "destination_path": "copy/"}
    job_id = w.iam.ok(w.iam.admin.post(f"{target}/import", json=body), 202)["job_id"]
    return Call("GET", f"{target}/import/{job_id}")


def _attached(w: World) -> Call:
    role, _ = w.iam.role()
    policy_id = w.iam.builtin("ReadOnly")
    w.iam.attach(policy_id, "role", role["id"])
    params = {"principal_type": "role", "principal_id": role["id"]}
    return Call("DELETE", f"{w.iam.base}/policies/{policy_id}/attachments", params=params)


def _group_with_member(w: World) -> Call:
    group_id = _group(w)
    role, _ = w.iam.role()
    body = {"subject_type": "role", "subject_id": role["id"]}
    w.iam.ok(w.iam.admin.post(f"{w.iam.base}/groups/{group_id}/members", json=body), 201)
    return Call(
        "DELETE",
        f"{w.iam.base}/groups/{group_id}/members",
        params={"subject_type": "role", "subject_id": role["id"]},
    )


def _member_to_remove(w: World) -> Call:
    user_id, _ = w.iam.user()
    return Call("DELETE", f"{w.iam.base}/members/{user_id}")


def _obj(w: World, method: str, suffix: str, params: dict[str, Any], json: Any = None) -> Call:
    return Call(method, f"{w.repo}{suffix}", params=params, json=json)


#: action → (what else the request needs, how to make it).
CASES: dict[str, tuple[str, Setup]] = {
    "DeleteOrganization": ("", _other_org),
    "ListMembers": ("", lambda w: Call("GET", f"{w.iam.base}/members")),
    "AddMember": ("", lambda w: Call("POST", f"{w.iam.base}/members", json={"username": unique("newcomer")})),
    "RemoveMember": ("", _member_to_remove),
    "ListRepositories": ("", lambda w: Call("GET", f"{w.iam.base}/repositories")),
    "CreateRepository": (
        "",
        lambda w: Call("POST", f"{w.iam.base}/repositories", json={"name": unique("r")}),
    ),
    "GetRepository": ("", lambda w: Call("GET", w.repo)),
    "UpdateRepository": ("", lambda w: Call("PUT", w.repo, json={"description": "changed"})),
    "DeleteRepository": ("", lambda w: Call("DELETE", w.iam.repository())),
    "CreateSession": ("", lambda w: Call("POST", f"{w.repo}/sessions")),
    "CommitSession": ("", lambda w: Call("POST", f"{w.repo}/sessions/{_session(w)}", json={"message": "m"})),
    "RollbackSession": ("", lambda w: Call("DELETE", f"{w.repo}/sessions/{_session(w)}")),
    "ApproveSession": ("", _approval_pending),
    "ListObjects": ("", lambda w: _obj(w, "GET", "/objects", {"prefix": ""})),
    "GetObject": ("", lambda w: _obj(w, "GET", "/object", {"path": "seed.txt"})),
    "PutObject": ("", lambda w: _obj(w, "PUT", "/object", {"session_id": _session(w), "path": "new.txt"})),
    "DeleteObject": (
        "",
        lambda w: _obj(w, "DELETE", "/object", {"session_id": _session(w), "path": "seed.txt"}),
    ),
    "ListCommits": ("", lambda w: _obj(w, "GET", "/log", {})),
    "GetCommit": ("", lambda w: _obj(w, "GET", f"/commits/{w.commit_id}", {})),
    "RevertCommit": ("", _revert),
    "CreateSandbox": ("", lambda w: _obj(w, "POST", "/sandboxes", {}, {"image": "i", "command": ["true"]})),
    "ListSandboxes": ("", lambda w: _obj(w, "GET", "/sandboxes", {})),
    "GetSandbox": ("", lambda w: _obj(w, "GET", f"/sandboxes/{w.sandbox_id}/status", {})),
    "FinishSandbox": ("", lambda w: _obj(w, "POST", f"/sandboxes/{_service(w)}/finish", {})),
    "CancelSandbox": ("", lambda w: _obj(w, "DELETE", f"/sandboxes/{_service(w)}", {})),
    "UseSandboxNetwork": (
        "CreateSandbox()",
        lambda w: _obj(w, "POST", "/sandboxes", {}, {"image": "i", "command": ["true"], "network": True}),
    ),
    "RunAs": (
        "CreateSandbox()",
        lambda w: _obj(
            w,
            "POST",
            "/sandboxes",
            {},
            {
                "image": "i",
                "command": ["true"],
                "run_as": {"type": "agent", "id": w.iam.agent("*()")[0]["id"]},
            },
        ),
    ),
    "ListSandboxTriggers": ("", lambda w: _obj(w, "GET", "/sandbox-triggers", {})),
    "GetSandboxTrigger": ("", lambda w: _obj(w, "GET", f"/sandbox-triggers/{_trigger(w)}", {})),
    "CreateSandboxTrigger": (
        "",
        lambda w: _obj(
            w,
            "POST",
            "/sandbox-triggers",
            {},
            {
                "name": "t",
                "conditions": [{"type": "prefix", "prefix": "x/"}],
                "sandbox_config": {"image": "i"},
            },
        ),
    ),
    "UpdateSandboxTrigger": (
        "",
        lambda w: _obj(w, "PATCH", f"/sandbox-triggers/{_trigger(w)}", {}, {"enabled": False}),
    ),
    "DeleteSandboxTrigger": ("", lambda w: _obj(w, "DELETE", f"/sandbox-triggers/{_trigger(w)}", {})),
    "ListSecrets": ("", lambda w: _obj(w, "GET", "/secrets", {})),
    "GetSecret": ("", lambda w: _obj(w, "GET", f"/secrets/{_secret(w)}", {})),
    "PutSecret": ("", lambda w: _obj(w, "PUT", "/secrets/TOKEN_B", {}, {"value": "v"})),
    "DeleteSecret": ("", lambda w: _obj(w, "DELETE", f"/secrets/{_secret(w)}", {})),
    "ListConnectors": ("", lambda w: Call("GET", f"{w.iam.base}/connectors")),
    "GetConnector": ("", lambda w: Call("GET", f"{w.iam.base}/connectors/{_connector(w)}")),
    "CreateConnector": (
        "",
        lambda w: Call(
            "POST",
            f"{w.iam.base}/connectors",
            json={
                "name": unique("c"),
                "type": "s3",
                "source_uri": "s3://some-bucket/p/",
                "config": {"access_key_id": "id", "secret_access_key": "s", "region": "us-east-1"},
            },
        ),
    ),
    "DeleteConnector": ("", lambda w: Call("DELETE", f"{w.iam.base}/connectors/{_connector(w)}")),
    "AttachConnector": ("", lambda w: _obj(w, "POST", "/connectors", {}, {"connector_id": _connector(w)})),
    "DetachConnector": (
        "",
        lambda w: _obj(
            w,
            "DELETE",
            "/connectors/"
            + w.iam.ok(w.iam.admin.post(f"{w.repo}/connectors", json={"connector_id": _connector(w)}), 201)[
                "id"
            ],
            {},
        ),
    ),
    "CreateImport": (
        "ListObjects()\nGetObject()",
        lambda w: Call(
            "POST",
            f"{w.iam.repository()}/import",
            json={
                "source_organization": w.iam.name,
                "source_repository": w.repo.rsplit("/", 1)[1],
                "destination_path": "copy/",
            },
        ),
    ),
    "GetImport": ("", _import_job),
    "ListGroups": ("", lambda w: Call("GET", f"{w.iam.base}/groups")),
    "GetGroup": ("", lambda w: Call("GET", f"{w.iam.base}/groups/{_group(w)}")),
    "CreateGroup": ("", lambda w: Call("POST", f"{w.iam.base}/groups", json={"name": unique("g")})),
    "UpdateGroup": ("", lambda w: Call("PUT", f"{w.iam.base}/groups/{_group(w)}", json={"description": "d"})),
    "DeleteGroup": ("", lambda w: Call("DELETE", f"{w.iam.base}/groups/{_group(w)}")),
    "AddGroupMember": (
        "",
        lambda w: Call(
            "POST",
            f"{w.iam.base}/groups/{_group(w)}/members",
            json={"subject_type": "role", "subject_id": w.iam.role()[0]["id"]},
        ),
    ),
    "RemoveGroupMember": ("", _group_with_member),
    "ListPolicies": ("", lambda w: Call("GET", f"{w.iam.base}/policies")),
    "GetPolicy": ("", lambda w: Call("GET", f"{w.iam.base}/policies/{w.iam.builtin('ReadOnly')}")),
    "CreatePolicy": (
        "",
        lambda w: Call(
            "POST", f"{w.iam.base}/policies", json={"name": unique("p"), "policy_text": "GetObject()"}
        ),
    ),
    "UpdatePolicy": (
        "",
        lambda w: Call(
            "PUT", f"{w.iam.base}/policies/{w.iam.policy('GetObject()')}", json={"description": "d"}
        ),
    ),
    "DeletePolicy": ("", lambda w: Call("DELETE", f"{w.iam.base}/policies/{w.iam.policy('GetObject()')}")),
    "AttachPolicy": (
        "",
        lambda w: Call(
            "POST",
            f"{w.iam.base}/policies/{w.iam.builtin('ReadOnly')}/attachments",
            json={"principal_type": "role", "principal_id": w.iam.role()[0]["id"]},
        ),
    ),
    "DetachPolicy": ("", _attached),
    "ListRoles": ("", lambda w: Call("GET", f"{w.iam.base}/roles")),
    "GetRole": ("", lambda w: Call("GET", f"{w.iam.base}/roles/{w.iam.role()[0]['name']}")),
    "CreateRole": (
        "",
        lambda w: Call("POST", f"{w.iam.base}/roles", json={"name": unique("r"), "description": ""}),
    ),
    "DeleteRole": ("", lambda w: Call("DELETE", f"{w.iam.base}/roles/{w.iam.role()[0]['name']}")),
    "ListAgents": ("", lambda w: Call("GET", f"{w.iam.base}/agents")),
    "GetAgent": ("", lambda w: Call("GET", f"{w.iam.base}/agents/{_agent(w)}")),
    "CreateAgent": (
        "",
        lambda w: Call("POST", f"{w.iam.base}/agents", json={"name": unique("a"), "description": ""}),
    ),
    "UpdateAgent": ("", lambda w: Call("PUT", f"{w.iam.base}/agents/{_agent(w)}", json={"description": "d"})),
    "DeleteAgent": ("", lambda w: Call("DELETE", f"{w.iam.base}/agents/{_agent(w)}")),
    "ListAPIKeys": ("", lambda w: Call("GET", f"{w.iam.base}/agents/{_agent(w)}/auth/keys")),
    "GetAPIKey": (
        "",
        lambda w: Call("GET", "{base}/agents/{0}/auth/keys/{1}".format(*_agent_key(w), base=w.iam.base)),
    ),
    "CreateAPIKey": (
        "",
        lambda w: Call("POST", f"{w.iam.base}/agents/{_agent(w)}/auth/keys", json={"name": "k"}),
    ),
    "RevokeAPIKey": (
        "",
        lambda w: Call("DELETE", "{base}/agents/{0}/auth/keys/{1}".format(*_agent_key(w), base=w.iam.base)),
    ),
}

#: Actions every member has (or every user has), and the websocket one: tested separately below.
SEPARATE = {"ListOrganizations", "GetOrganization", "CreateOrganization", "ExecSandbox"}


def test_the_matrix_covers_every_action() -> None:
    assert set(CASES) | SEPARATE == set(ACTIONS)
    assert not set(CASES) & SEPARATE


@pytest.mark.parametrize("action", list(CASES))
def test_without_the_action_403_with_it_success(world: World, action: str) -> None:
    iam = world.iam
    needs, setup = CASES[action]
    call = setup(world)
    org = call.org or iam.name
    user_id, member = iam.user(org)
    policy_id = iam.policy(needs or "# nothing yet", org)
    iam.attach(policy_id, "user", user_id, org)
    assert_forbidden(call.send(member), action)
    iam.set_policy(policy_id, f"{needs}\n{action}()", org)
    allowed = call.send(member)
    assert allowed.is_success, f"{action} with its policy: {allowed.status_code} {allowed.text}"


def test_members_see_their_organizations_without_any_policy(iam: IamOrg) -> None:
    _, member = iam.user()
    assert iam.name in [o["name"] for o in iam.ok(member.get("/organizations"))["results"]]
    assert iam.ok(member.get(iam.base))["name"] == iam.name
    other = unique("other")
    iam.ok(iam.admin.post("/organizations", json={"name": other}), 201)
    assert other not in [o["name"] for o in iam.ok(member.get("/organizations"))["results"]]
    assert_forbidden(member.get(f"/organizations/{other}"), "GetOrganization")


def test_users_create_organizations_and_become_their_owners(iam: IamOrg) -> None:
    _, member = iam.user()
    name = unique("mine")
    iam.ok(member.post("/organizations", json={"name": name}), 201)
    # The creator owns it: everything is allowed without any policy.
    iam.ok(member.post(f"/organizations/{name}/repositories", json={"name": "r1"}), 201)
    iam.ok(member.post(f"/organizations/{name}/agents", json={"name": "a1", "description": ""}), 201)
    _, agent = iam.agent(inline_policy="*()")
    _, role = iam.role()
    for principal in (agent, role):
        assert_forbidden(principal.post("/organizations", json={"name": unique("no")}), "CreateOrganization")


def _exec_true(server: LocalServer, path: str, token: str) -> int:
    """Run ``true`` over the exec websocket; returns its exit code."""
    url = server.endpoint_url.replace("http://", "ws://") + "/api/v1" + path
    with connect(url, additional_headers={"Authorization": token}, open_timeout=10) as ws:
        ws.send(bytes([0]) + json.dumps({"cmd": ["true"]}).encode())
        while True:
            message = ws.recv(timeout=60)
            assert isinstance(message, bytes)
            if message[0] == 5:
                return int(json.loads(message[1:])["exit_code"])


def test_exec_needs_exec_sandbox(world: World, server: LocalServer) -> None:
    iam = world.iam
    sandbox_id = _service(world)
    path = f"{world.repo}/sandboxes/{sandbox_id}/exec"
    user_id, member = iam.user()
    policy_id = iam.policy("GetSandbox()")
    iam.attach(policy_id, "user", user_id)
    token = member.headers["Authorization"]
    with pytest.raises(InvalidStatus) as refused:
        _exec_true(server, path, token)
    assert refused.value.response.status_code == 403
    iam.set_policy(policy_id, "GetSandbox()\nExecSandbox()")
    assert _exec_true(server, path, token) == 0
    iam.ok(iam.admin.delete(f"{world.repo}/sandboxes/{sandbox_id}"), 202)
    iam.wait_sandbox(world.repo, sandbox_id)
