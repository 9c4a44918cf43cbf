"""The built-in policies validate and grant what their names say."""

from __future__ import annotations

import pytest

from tilde.server.iam import ACTIONS, BUILTIN_POLICIES, PolicySet, Resource, parse_policy, validate_policy

EVERY_RESOURCE = Resource(repository="r", path="p/x", agent="a", role="o")


@pytest.mark.parametrize("name", list(BUILTIN_POLICIES))
def test_builtins_validate(name: str) -> None:
    builtin = BUILTIN_POLICIES[name]
    assert builtin.name == name
    assert builtin.description
    assert validate_policy(builtin.policy_text) == []


def _allowed(name: str) -> set[str]:
    policies = PolicySet([parse_policy(BUILTIN_POLICIES[name].policy_text)])
    return {action for action in ACTIONS if policies.allows(action, EVERY_RESOURCE)}


def test_full_access_allows_everything() -> None:
    assert _allowed("FullAccess") == set(ACTIONS)


def test_read_only_reads_and_never_writes() -> None:
    allowed = _allowed("ReadOnly")
    assert {
        "GetObject",
        "ListObjects",
        "GetRepository",
        "ListCommits",
        "GetSandbox",
        "GetSandboxTrigger",
    } <= allowed
    assert all(a.startswith(("List", "Get")) for a in allowed)
    assert not {"ListSecrets", "GetSecret", "ListPolicies", "ListAPIKeys"} & allowed


def test_read_write_adds_writes_to_read_only() -> None:
    read_only, read_write = _allowed("ReadOnly"), _allowed("ReadWrite")
    assert read_only < read_write
    assert read_write - read_only == {
        "CreateSession",
        "CommitSession",
        "RollbackSession",
        "PutObject",
        "DeleteObject",
        "RevertCommit",
        "CreateSandbox",
        "ExecSandbox",
        "FinishSandbox",
        "CancelSandbox",
    }
    assert "ApproveSession" not in read_write
    assert "RunAs" not in read_write
