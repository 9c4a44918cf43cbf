"""The route → action table: which catalogue action guards each ``/api/v1`` route.

`ROUTE_ACTIONS` is the single source of truth for the documentation (``docs/reference/actions.md`` is
generated from it by `render_actions_page`) and for the tests. Handlers name their action literally, next to
the resource arguments only they can compute (the object path from the query string, the agent from the
path, a second check for a copy's source); a literal keeps each handler readable on its own. What keeps the
two from drifting apart is the enforcement test in ``tests/e2e/iam``: it walks every route the application
mounts, fails when one has no entry here (or an entry names no mounted route), and calls each route as a
principal without policies, expecting the 403 to name exactly the action listed here.

Paths are relative to ``/api/v1``; path parameter names do not matter when comparing with mounted routes
(`normalise_path`). Where a route checks a second action too, the second is listed in `SECONDARY_ACTIONS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from tilde.server.iam.actions import ACTIONS

__all__ = ["ROUTE_ACTIONS", "SECONDARY_ACTIONS", "normalise_path", "render_actions_page", "routes_by_action"]

_O = "/organizations/{org}"
_R = _O + "/repositories/{repo}"
_S = _R + "/sessions/{session_id}"
_SB = _R + "/sandboxes/{sandbox_id}"
_T = _R + "/sandbox-triggers/{trigger_id}"
_AK = _O + "/agents/{name}/auth/keys"
_RK = _O + "/roles/{name}/auth/keys"

_TABLE: dict[tuple[str, str], str] = {
    # Organizations and members
    ("GET", "/auth/me"): "ListOrganizations",
    ("GET", "/organizations"): "ListOrganizations",
    # Which optional extensions the server has: open to every authenticated caller, like the line above
    ("GET", "/capabilities"): "ListOrganizations",
    ("POST", "/organizations"): "CreateOrganization",
    ("GET", _O): "GetOrganization",
    ("DELETE", _O): "DeleteOrganization",
    ("GET", _O + "/members"): "ListMembers",
    ("POST", _O + "/members"): "AddMember",
    ("DELETE", _O + "/members/{user_id}"): "RemoveMember",
    # Repositories
    ("GET", _O + "/repositories"): "ListRepositories",
    ("POST", _O + "/repositories"): "CreateRepository",
    ("GET", _R): "GetRepository",
    ("PUT", _R): "UpdateRepository",
    ("DELETE", _R): "DeleteRepository",
    # Sessions
    ("POST", _R + "/sessions"): "CreateSession",
    ("POST", _S): "CommitSession",
    ("DELETE", _S): "RollbackSession",
    ("GET", _S + "/approve"): "ListObjects",
    ("HEAD", _S + "/approve"): "CommitSession",
    ("POST", _S + "/approve"): "ApproveSession",
    # Objects
    ("GET", _R + "/objects"): "ListObjects",
    ("GET", _R + "/changes"): "ListObjects",
    ("GET", _R + "/object"): "GetObject",
    ("HEAD", _R + "/object"): "GetObject",
    ("PUT", _R + "/object"): "PutObject",
    ("POST", _R + "/object/finalize"): "PutObject",
    ("POST", _R + "/object/multipart"): "PutObject",
    ("GET", _R + "/object/multipart/part"): "PutObject",
    ("POST", _R + "/object/multipart/complete"): "PutObject",
    ("DELETE", _R + "/object/multipart"): "PutObject",
    ("GET", _R + "/object/multipart"): "PutObject",
    ("POST", _R + "/object/copy"): "PutObject",
    ("DELETE", _R + "/object"): "DeleteObject",
    ("POST", _R + "/objects/delete"): "DeleteObject",
    ("POST", _R + "/objects:batch"): "PutObject",
    ("POST", _R + "/objects:download"): "GetObject",
    # Commits
    ("GET", _R + "/log"): "ListCommits",
    ("GET", _R + "/commits/{commit_id}"): "GetCommit",
    ("GET", _R + "/diff"): "GetCommit",
    ("POST", _R + "/commits/{commit_id}/revert"): "RevertCommit",
    # Sandboxes
    ("POST", _R + "/sandboxes"): "CreateSandbox",
    ("GET", _R + "/sandboxes"): "ListSandboxes",
    ("GET", _SB): "GetSandbox",
    ("GET", _SB + "/status"): "GetSandbox",
    ("GET", _SB + "/logs/stdout"): "GetSandbox",
    ("GET", _SB + "/logs/network"): "GetSandbox",
    ("WEBSOCKET", _SB + "/exec"): "ExecSandbox",
    ("POST", _SB + "/finish"): "FinishSandbox",
    ("DELETE", _SB): "CancelSandbox",
    # Triggers
    ("GET", _R + "/sandbox-triggers"): "ListSandboxTriggers",
    ("POST", _R + "/sandbox-triggers"): "CreateSandboxTrigger",
    ("GET", _T): "GetSandboxTrigger",
    ("GET", _T + "/runs"): "GetSandboxTrigger",
    ("PUT", _T): "UpdateSandboxTrigger",
    ("PATCH", _T): "UpdateSandboxTrigger",
    ("DELETE", _T): "DeleteSandboxTrigger",
    # Secrets (repository scope carries `repository`, agent scope `agent`)
    ("GET", _R + "/secrets"): "ListSecrets",
    ("GET", _R + "/secrets/{key}"): "GetSecret",
    ("PUT", _R + "/secrets/{key}"): "PutSecret",
    ("DELETE", _R + "/secrets/{key}"): "DeleteSecret",
    ("GET", _O + "/agents/{name}/secrets"): "ListSecrets",
    ("GET", _O + "/agents/{name}/secrets/{key}"): "GetSecret",
    ("PUT", _O + "/agents/{name}/secrets/{key}"): "PutSecret",
    ("DELETE", _O + "/agents/{name}/secrets/{key}"): "DeleteSecret",
    # Connectors and imports
    ("GET", _O + "/connectors"): "ListConnectors",
    ("POST", _O + "/connectors"): "CreateConnector",
    ("GET", _O + "/connectors/{connector_id}"): "GetConnector",
    ("DELETE", _O + "/connectors/{connector_id}"): "DeleteConnector",
    ("GET", _R + "/connectors"): "ListConnectors",
    ("POST", _R + "/connectors"): "AttachConnector",
    ("DELETE", _R + "/connectors/{connector_id}"): "DetachConnector",
    ("POST", _R + "/import"): "CreateImport",
    ("GET", _R + "/import/{job_id}"): "GetImport",
    # Groups
    ("GET", _O + "/groups"): "ListGroups",
    ("POST", _O + "/groups"): "CreateGroup",
    ("GET", _O + "/groups/{group_id}"): "GetGroup",
    ("PUT", _O + "/groups/{group_id}"): "UpdateGroup",
    ("DELETE", _O + "/groups/{group_id}"): "DeleteGroup",
    ("POST", _O + "/groups/{group_id}/members"): "AddGroupMember",
    ("DELETE", _O + "/groups/{group_id}/members"): "RemoveGroupMember",
    ("GET", _O + "/effective-groups"): "ListGroups",
    # Policies
    ("GET", _O + "/policies"): "ListPolicies",
    ("POST", _O + "/policies"): "CreatePolicy",
    ("POST", _O + "/policies:validate"): "ListPolicies",
    ("POST", _O + "/policies:generate"): "ListPolicies",
    ("GET", _O + "/policies/{policy_id}"): "GetPolicy",
    ("PUT", _O + "/policies/{policy_id}"): "UpdatePolicy",
    ("DELETE", _O + "/policies/{policy_id}"): "DeletePolicy",
    ("POST", _O + "/policies/{policy_id}/attachments"): "AttachPolicy",
    ("DELETE", _O + "/policies/{policy_id}/attachments"): "DetachPolicy",
    ("GET", _O + "/attachments"): "ListPolicies",
    ("GET", _O + "/effective-policies"): "ListPolicies",
    # Roles, agents and their API keys
    ("GET", _O + "/roles"): "ListRoles",
    ("POST", _O + "/roles"): "CreateRole",
    ("GET", _O + "/roles/{name}"): "GetRole",
    ("DELETE", _O + "/roles/{name}"): "DeleteRole",
    ("GET", _O + "/agents"): "ListAgents",
    ("POST", _O + "/agents"): "CreateAgent",
    ("GET", _O + "/agents/{name}"): "GetAgent",
    ("PUT", _O + "/agents/{name}"): "UpdateAgent",
    ("DELETE", _O + "/agents/{name}"): "DeleteAgent",
    ("GET", _RK): "ListAPIKeys",
    ("POST", _RK): "CreateAPIKey",
    ("GET", _RK + "/{key_id}"): "GetAPIKey",
    ("DELETE", _RK + "/{key_id}"): "RevokeAPIKey",
    ("GET", _AK): "ListAPIKeys",
    ("POST", _AK): "CreateAPIKey",
    ("GET", _AK + "/{key_id}"): "GetAPIKey",
    ("DELETE", _AK + "/{key_id}"): "RevokeAPIKey",
}

#: ``(method, path template relative to /api/v1)`` → the action the route checks. ``WEBSOCKET`` marks the
#: ``/exec`` websocket.
ROUTE_ACTIONS: Mapping[tuple[str, str], str] = MappingProxyType(_TABLE)

#: Routes that check a further action after the one in `ROUTE_ACTIONS`, and why.
SECONDARY_ACTIONS: Mapping[tuple[str, str], tuple[str, str]] = MappingProxyType(
    {
        ("POST", _R + "/object/copy"): ("GetObject", "on the source path"),
        ("POST", _R + "/objects:batch"): ("PutObject", "again on every path in the batch"),
        ("POST", _R + "/objects:download"): ("GetObject", "again on every path in the list"),
        ("POST", _R + "/sandboxes"): (
            "RunAs, UseSandboxNetwork",
            "RunAs when the body names run_as, UseSandboxNetwork when it asks for network",
        ),
        ("POST", _R + "/sandbox-triggers"): ("RunAs", "when the body names run_as"),
        ("PUT", _T): ("RunAs", "when the body names run_as"),
        ("POST", _R + "/import"): (
            "ListObjects, GetObject",
            "on the source repository, for a cross-repository import",
        ),
    }
)

_PARAM = re.compile(r"\{[^}]*\}")


def normalise_path(path: str) -> str:
    """Return a path template with every parameter written ``{}`` (names and converters dropped)."""
    return _PARAM.sub("{}", path)


def routes_by_action() -> dict[str, list[tuple[str, str]]]:
    """Return every catalogue action with the routes it guards (possibly none), in catalogue order."""
    found: dict[str, list[tuple[str, str]]] = {name: [] for name in ACTIONS}
    for route, action in _TABLE.items():
        found[action].append(route)
    return found


def render_actions_page() -> str:
    """Return the Markdown of ``docs/reference/actions.md`` (the catalogue with the routes each guards)."""
    lines = [
        "# Actions",
        "",
        "<!-- Generated from tilde.server.iam.actions.ACTIONS and",
        "     tilde.server.iam.route_actions.ROUTE_ACTIONS by",
        "     `python -m tilde.server.iam.route_actions > docs/reference/actions.md`;",
        "     a test fails when this page is stale. -->",
        "",
        "Every route of the local server's `/api/v1` API is guarded by exactly one action. A policy",
        "statement grants (or denies) an action, optionally only for some resources: the arguments",
        "column lists the resource arguments a statement about that action may carry. Paths are",
        "relative to `/api/v1`; `O` is `/organizations/{org}` and `R` is `O/repositories/{repo}`.",
        "A `HEAD` request is checked like the `GET` on the same path. See the policies guide for the",
        "policy language.",
        "",
        "Organization owners and the server's admin may do everything. Members with no policy may still list",
        "and read their organizations (`ListOrganizations`, `GetOrganization`). Whatever the policies say,",
        "only users create or delete organizations and approve sessions, and agents never create API keys,",
        "agents, policies or groups, never change an agent, and never attach or detach policies.",
        "",
    ]
    by_action = routes_by_action()
    group = ""
    for name, action in ACTIONS.items():
        if action.group != group:
            group = action.group
            lines += [
                f"## {group}",
                "",
                "| Action | Arguments | Routes | What it permits |",
                "|---|---|---|---|",
            ]
        routes = "<br>".join(f"`{method} {_abbreviate(path)}`" for method, path in by_action[name]) or "-"
        arguments = ", ".join(f"`{a}`" for a in action.resources) or "-"
        lines.append(f"| `{name}` | {arguments} | {routes} | {action.summary} |")
        if _is_last_of_group(name):
            lines.append("")
    lines += ["## Routes checking a second action", "", "| Route | Also checks | When |", "|---|---|---|"]
    for (method, path), (also, when) in SECONDARY_ACTIONS.items():
        lines.append(f"| `{method} {_abbreviate(path)}` | `{also}` | {when} |")
    return "\n".join(lines) + "\n"


def _abbreviate(path: str) -> str:
    if path.startswith(_R):
        return "R" + path[len(_R) :]
    if path.startswith(_O):
        return "O" + path[len(_O) :]
    return path


def _is_last_of_group(name: str) -> bool:
    names = list(ACTIONS)
    index = names.index(name)
    return index == len(names) - 1 or ACTIONS[names[index + 1]].group != ACTIONS[name].group


if __name__ == "__main__":
    print(render_actions_page(), end="")
