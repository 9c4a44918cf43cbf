"""The built-in policies every organization has.

They are seeded into each organization as policies with ``is_builtin: true`` (not editable, not deletable) and
can be attached like any other policy. Their texts are ordinary policy language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["BUILTIN_POLICIES", "READ_ACTIONS", "WRITE_ACTIONS", "BuiltinPolicy"]


@dataclass(frozen=True)
class BuiltinPolicy:
    """A policy every organization has.

    Attributes:
        name: The policy's name, unique within an organization.
        description: One line for listings.
        policy_text: The policy's text.

    """

    name: str
    description: str
    policy_text: str


#: What the ``ReadOnly`` policy grants: reading the organization, repositories, objects, commits, sandboxes
#: (status and logs), and triggers.
READ_ACTIONS: tuple[str, ...] = (
    "ListOrganizations",
    "GetOrganization",
    "ListRepositories",
    "GetRepository",
    "ListObjects",
    "GetObject",
    "ListCommits",
    "GetCommit",
    "ListSandboxes",
    "GetSandbox",
    "ListSandboxTriggers",
    "GetSandboxTrigger",
)

#: What ``ReadWrite`` grants on top of `READ_ACTIONS`: sessions, object writes, reverts and running sandboxes.
WRITE_ACTIONS: tuple[str, ...] = (
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
)


def _text(comment: str, actions: tuple[str, ...]) -> str:
    return "".join([f"# {comment}\n", *(f"{action}()\n" for action in actions)])


#: The built-in policies by name.
BUILTIN_POLICIES: Mapping[str, BuiltinPolicy] = MappingProxyType(
    {
        policy.name: policy
        for policy in (
            BuiltinPolicy("FullAccess", "Every action on every resource.", "# Everything.\n*()\n"),
            BuiltinPolicy(
                "ReadOnly",
                "Read repositories, objects, commits, sandboxes and triggers.",
                _text("Read-only access.", READ_ACTIONS),
            ),
            BuiltinPolicy(
                "ReadWrite",
                "ReadOnly, plus sessions, object writes, reverts and running sandboxes.",
                _text("Read and write access.", READ_ACTIONS + WRITE_ACTIONS),
            ),
        )
    }
)
