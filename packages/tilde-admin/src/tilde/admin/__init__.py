"""Organizations and IAM for the Tilde SDK.

Members, groups, policies, roles, agents, API keys, secrets, connectors and imports. Everything org-scoped
hangs off `Organization` (``org.members``, ``org.groups``, ``org.policies``, ``org.roles``, ``org.agents``,
``org.connectors``); repository-scoped collections hang off the repository handle (``repo.secrets``,
``repo.connectors``, ``repo.imports``); ``agent.secrets``, ``agent.api_keys`` and ``role.api_keys`` hang off
their principal. One module per resource family.
"""

from tilde.admin._version import __version__
from tilde.admin.agents import Agent, Agents
from tilde.admin.api_keys import APIKey, APIKeys
from tilde.admin.client import AdminClientMixin, Client
from tilde.admin.connectors import Connector, Connectors, RepositoryConnectors
from tilde.admin.groups import EffectiveGroup, Group, GroupMember, GroupMembers, Groups
from tilde.admin.imports import ImportJob, Imports
from tilde.admin.members import Member, Members
from tilde.admin.organizations import Organization, Organizations
from tilde.admin.policies import (
    Attachment,
    EffectivePolicy,
    Policies,
    Policy,
    ValidationError,
    ValidationResult,
)
from tilde.admin.repository import AdminRepositoryMixin, Repository
from tilde.admin.roles import Role, Roles
from tilde.admin.secrets import Secret, Secrets

__all__ = [
    "APIKey",
    "APIKeys",
    "AdminClientMixin",
    "AdminRepositoryMixin",
    "Agent",
    "Agents",
    "Attachment",
    "Client",
    "Connector",
    "Connectors",
    "EffectiveGroup",
    "EffectivePolicy",
    "Group",
    "GroupMember",
    "GroupMembers",
    "Groups",
    "ImportJob",
    "Imports",
    "Member",
    "Members",
    "Organization",
    "Organizations",
    "Policies",
    "Policy",
    "Repository",
    "RepositoryConnectors",
    "Role",
    "Roles",
    "Secret",
    "Secrets",
    "ValidationError",
    "ValidationResult",
    "__version__",
]
