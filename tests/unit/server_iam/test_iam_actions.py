"""The action catalogue: exactly the shared design's names, arguments and families."""

from __future__ import annotations

import pytest

from tilde.server.iam import ACTIONS, RESOURCE_ARGS, match_actions

EXPECTED = """
Organizations: ListOrganizations CreateOrganization GetOrganization DeleteOrganization
Members: ListMembers AddMember RemoveMember
Repositories: ListRepositories CreateRepository GetRepository(repository) UpdateRepository(repository)
  DeleteRepository(repository)
Sessions: CreateSession(repository) CommitSession(repository) RollbackSession(repository)
  ApproveSession(repository)
Objects: ListObjects(repository,path) GetObject(repository,path) PutObject(repository,path)
  DeleteObject(repository,path)
Commits: ListCommits(repository) GetCommit(repository) RevertCommit(repository)
Sandboxes: CreateSandbox(repository) ListSandboxes(repository) GetSandbox(repository) ExecSandbox(repository)
  FinishSandbox(repository) CancelSandbox(repository) RunAs(agent,role) UseSandboxNetwork(repository)
Triggers: ListSandboxTriggers(repository) GetSandboxTrigger(repository) CreateSandboxTrigger(repository)
  UpdateSandboxTrigger(repository) DeleteSandboxTrigger(repository)
Secrets: ListSecrets(repository,agent) GetSecret(repository,agent) PutSecret(repository,agent)
  DeleteSecret(repository,agent)
Connectors: ListConnectors(repository) GetConnector CreateConnector DeleteConnector
  AttachConnector(repository) DetachConnector(repository)
Imports: CreateImport(repository) GetImport(repository)
Groups: ListGroups GetGroup CreateGroup UpdateGroup DeleteGroup AddGroupMember RemoveGroupMember
Policies: ListPolicies GetPolicy CreatePolicy UpdatePolicy DeletePolicy AttachPolicy DetachPolicy
Roles: ListRoles GetRole(role) CreateRole DeleteRole(role)
Agents: ListAgents GetAgent(agent) CreateAgent UpdateAgent(agent) DeleteAgent(agent)
API keys: ListAPIKeys(agent,role) GetAPIKey(agent,role) CreateAPIKey(agent,role) RevokeAPIKey(agent,role)
"""


def _expected() -> list[tuple[str, str, tuple[str, ...]]]:
    rows: list[tuple[str, str, tuple[str, ...]]] = []
    group = ""
    for raw in EXPECTED.strip().splitlines():
        if not raw.startswith(" "):
            group, raw = raw.split(":", 1)
        for item in raw.split():
            name, _, args = item.partition("(")
            rows.append((group, name, tuple(a for a in args.rstrip(")").split(",") if a)))
    return rows


def test_catalogue_is_exactly_the_design_in_documentation_order() -> None:
    actual = [(a.group, a.name, a.resources) for a in ACTIONS.values()]
    assert actual == _expected()
    assert len(ACTIONS) == 75


def test_every_action_is_documented() -> None:
    for name, action in ACTIONS.items():
        assert action.name == name
        assert action.summary.endswith(".")
        assert set(action.resources) <= set(RESOURCE_ARGS)


def test_catalogue_is_read_only() -> None:
    with pytest.raises(TypeError):
        ACTIONS["Nope"] = ACTIONS["GetObject"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("GetObject", ("GetObject",)),
        ("*Object", ("GetObject", "PutObject", "DeleteObject")),
        ("Get*Key", ("GetAPIKey",)),
        ("?etObject", ("GetObject",)),
        ("Nope*", ()),
        ("getobject", ()),
        ("Nope", ()),
    ],
)
def test_match_actions(pattern: str, expected: tuple[str, ...]) -> None:
    assert match_actions(pattern) == expected


def test_star_matches_everything() -> None:
    assert match_actions("*") == tuple(ACTIONS)
