"""Organizations, IAM, secrets, connectors and imports for the Tilde SDK.

This release covers organizations and their members. Everything else listed above arrives in later releases,
one module per resource family, hanging off `Organization` and `AdminRepositoryMixin`.
"""

from tilde.admin._version import __version__
from tilde.admin.client import AdminClientMixin, Client
from tilde.admin.members import Member, Members
from tilde.admin.organizations import Organization, Organizations
from tilde.admin.repository import AdminRepositoryMixin, Repository

__all__ = [
    "AdminClientMixin",
    "AdminRepositoryMixin",
    "Client",
    "Member",
    "Members",
    "Organization",
    "Organizations",
    "Repository",
    "__version__",
]
