"""The action catalogue: every name a policy statement can grant or deny.

Each route of the server is guarded by exactly one of these actions. An action lists the resource arguments
its statements may restrict (see `RESOURCE_ARGS`); a statement naming an argument the action does not take
does not apply to that action.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

__all__ = ["ACTIONS", "RESOURCE_ARGS", "Action", "match_actions"]

#: The resource arguments a statement may carry, in the order the documentation lists them.
RESOURCE_ARGS: tuple[str, ...] = ("repository", "path", "agent", "role")


@dataclass(frozen=True)
class Action:
    """One action of the catalogue.

    Attributes:
        name: The name policies use, e.g. ``"GetObject"``.
        summary: One line saying what the action permits.
        resources: The resource arguments statements about this action may restrict.
        group: The family the documentation lists it under, e.g. ``"Objects"``.

    """

    name: str
    summary: str
    resources: tuple[str, ...]
    group: str


_R = ("repository",)
_RP = ("repository", "path")
_RA = ("repository", "agent")
_AR = ("agent", "role")

# (group, name, resources, summary) in documentation order.
_CATALOGUE: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("Organizations", "ListOrganizations", (), "List the organizations the caller belongs to."),
    ("Organizations", "CreateOrganization", (), "Create an organization."),
    ("Organizations", "GetOrganization", (), "Read an organization."),
    ("Organizations", "DeleteOrganization", (), "Delete an organization."),
    ("Members", "ListMembers", (), "List an organization's members."),
    ("Members", "AddMember", (), "Add a user to an organization."),
    ("Members", "RemoveMember", (), "Remove a user from an organization."),
    ("Repositories", "ListRepositories", (), "List an organization's repositories."),
    ("Repositories", "CreateRepository", (), "Create a repository."),
    ("Repositories", "GetRepository", _R, "Read a repository's settings."),
    ("Repositories", "UpdateRepository", _R, "Change a repository's settings."),
    ("Repositories", "DeleteRepository", _R, "Delete a repository and its history."),
    ("Sessions", "CreateSession", _R, "Open a session (a transaction) on a repository."),
    ("Sessions", "CommitSession", _R, "Commit a session."),
    ("Sessions", "RollbackSession", _R, "Roll a session back."),
    ("Sessions", "ApproveSession", _R, "Approve a session waiting for a human."),
    ("Objects", "ListObjects", _RP, "List objects and uncommitted changes under a prefix."),
    ("Objects", "GetObject", _RP, "Read an object's bytes or metadata."),
    ("Objects", "PutObject", _RP, "Write an object (upload, multipart, copy destination)."),
    ("Objects", "DeleteObject", _RP, "Delete an object."),
    ("Commits", "ListCommits", _R, "Read a repository's commit log."),
    ("Commits", "GetCommit", _R, "Read one commit and its diff."),
    ("Commits", "RevertCommit", _R, "Revert a commit."),
    ("Sandboxes", "CreateSandbox", _R, "Start a sandbox on a repository."),
    ("Sandboxes", "ListSandboxes", _R, "List a repository's sandboxes."),
    ("Sandboxes", "GetSandbox", _R, "Read a sandbox's status and logs."),
    ("Sandboxes", "ExecSandbox", _R, "Run commands in a sandbox."),
    ("Sandboxes", "FinishSandbox", _R, "Finish a sandbox (commit its changes)."),
    ("Sandboxes", "CancelSandbox", _R, "Cancel a sandbox."),
    ("Sandboxes", "RunAs", _AR, "Start a sandbox or a trigger as an agent or a role."),
    (
        "Sandboxes",
        "UseSandboxNetwork",
        _R,
        "Start a sandbox with network access (`network: true`, through its egress proxy).",
    ),
    ("Triggers", "ListSandboxTriggers", _R, "List a repository's sandbox triggers."),
    ("Triggers", "GetSandboxTrigger", _R, "Read a sandbox trigger and its runs."),
    ("Triggers", "CreateSandboxTrigger", _R, "Create a sandbox trigger."),
    ("Triggers", "UpdateSandboxTrigger", _R, "Change a sandbox trigger."),
    ("Triggers", "DeleteSandboxTrigger", _R, "Delete a sandbox trigger."),
    ("Secrets", "ListSecrets", _RA, "List secret names (never values)."),
    ("Secrets", "GetSecret", _RA, "Read a secret's value."),
    ("Secrets", "PutSecret", _RA, "Create or replace a secret."),
    ("Secrets", "DeleteSecret", _RA, "Delete a secret."),
    (
        "Connectors",
        "ListConnectors",
        _R,
        "List connectors (of the organization, or attached to a repository).",
    ),
    ("Connectors", "GetConnector", (), "Read a connector."),
    ("Connectors", "CreateConnector", (), "Create a connector."),
    ("Connectors", "DeleteConnector", (), "Delete a connector."),
    ("Connectors", "AttachConnector", _R, "Attach a connector to a repository."),
    ("Connectors", "DetachConnector", _R, "Detach a connector from a repository."),
    ("Imports", "CreateImport", _R, "Start an import into a repository."),
    ("Imports", "GetImport", _R, "Read an import job."),
    ("Groups", "ListGroups", (), "List groups and a principal's effective groups."),
    ("Groups", "GetGroup", (), "Read a group, its members and attachments."),
    ("Groups", "CreateGroup", (), "Create a group."),
    ("Groups", "UpdateGroup", (), "Rename or describe a group."),
    ("Groups", "DeleteGroup", (), "Delete a group."),
    ("Groups", "AddGroupMember", (), "Add a user, group, role or agent to a group."),
    ("Groups", "RemoveGroupMember", (), "Remove a member from a group."),
    ("Policies", "ListPolicies", (), "List, validate and generate policies; read attachments."),
    ("Policies", "GetPolicy", (), "Read a policy and its attachments."),
    ("Policies", "CreatePolicy", (), "Create a policy."),
    ("Policies", "UpdatePolicy", (), "Change a policy."),
    ("Policies", "DeletePolicy", (), "Delete a policy."),
    ("Policies", "AttachPolicy", (), "Attach a policy to a principal."),
    ("Policies", "DetachPolicy", (), "Detach a policy from a principal."),
    ("Roles", "ListRoles", (), "List roles."),
    ("Roles", "GetRole", ("role",), "Read a role."),
    ("Roles", "CreateRole", (), "Create a role."),
    ("Roles", "DeleteRole", ("role",), "Delete a role and revoke its keys."),
    ("Agents", "ListAgents", (), "List agents."),
    ("Agents", "GetAgent", ("agent",), "Read an agent."),
    ("Agents", "CreateAgent", (), "Create an agent."),
    ("Agents", "UpdateAgent", ("agent",), "Change an agent's description, metadata or inline policy."),
    ("Agents", "DeleteAgent", ("agent",), "Delete an agent and revoke its keys."),
    ("API keys", "ListAPIKeys", _AR, "List an agent's or a role's API keys."),
    ("API keys", "GetAPIKey", _AR, "Read one API key (never the token)."),
    ("API keys", "CreateAPIKey", _AR, "Mint an API key for an agent or a role."),
    ("API keys", "RevokeAPIKey", _AR, "Revoke an API key."),
)

#: Every action by name, in documentation order.
ACTIONS: Mapping[str, Action] = MappingProxyType(
    {name: Action(name, summary, resources, group) for group, name, resources, summary in _CATALOGUE}
)


@lru_cache(maxsize=1024)
def match_actions(pattern: str) -> tuple[str, ...]:
    """Expand an action pattern into the catalogue names it stands for.

    Args:
        pattern: An action name or a glob over names (``*``, ``?``), case-sensitive.

    Returns:
        The matching names in documentation order; empty when nothing matches.

    """
    if "*" not in pattern and "?" not in pattern:
        return (pattern,) if pattern in ACTIONS else ()
    matcher = re.compile(fnmatch.translate(pattern)).match
    return tuple(name for name in ACTIONS if matcher(name))
