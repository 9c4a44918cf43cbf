"""Organizations, members, connectors, secrets and imports for the Tilde SDK.

This release covers organizations, members, connectors, repository secrets and imports. Groups, policies,
roles, agents and API keys arrive in a later release, one module per resource family, hanging off
`Organization`.
"""

from tilde.admin._version import __version__
from tilde.admin.client import AdminClientMixin, Client
from tilde.admin.connectors import Connector, Connectors, RepositoryConnectors
from tilde.admin.imports import ImportJob, Imports
from tilde.admin.members import Member, Members
from tilde.admin.organizations import Organization, Organizations
from tilde.admin.repository import AdminRepositoryMixin, Repository
from tilde.admin.secrets import Secret, Secrets

__all__ = [
    "AdminClientMixin",
    "AdminRepositoryMixin",
    "Client",
    "Connector",
    "Connectors",
    "ImportJob",
    "Imports",
    "Member",
    "Members",
    "Organization",
    "Organizations",
    "Repository",
    "RepositoryConnectors",
    "Secret",
    "Secrets",
    "__version__",
]
