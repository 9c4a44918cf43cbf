"""Organizations: ``client.organizations`` / ``tilde.organizations``.

An `Organization` is the root of every org-scoped collection: repositories, members, groups, policies,
roles, agents and connectors, each from its own module.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic

import tilde.data
from tilde.admin.agents import Agents
from tilde.admin.connectors import Connectors
from tilde.admin.groups import Groups
from tilde.admin.members import Members
from tilde.admin.policies import Policies
from tilde.admin.roles import Roles
from tilde.core.names import check_org, segment
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _text
from tilde.data.repositories import RepositoryT

if TYPE_CHECKING:
    from tilde.core.pagination import PaginatedIterator

__all__ = ["Organization", "Organizations"]


class Organization(Generic[RepositoryT]):
    """One organization, the owner of repositories, members and IAM entities.

    Generic over the client's repository class, so ``org.repositories`` hands out the same handles as the
    client it came from (``tilde.Repository`` through ``tilde.Client``).

    Args:
        client: The client to send requests with.
        id: The organization's id.
        name: The organization's slug (what every org-scoped path uses).
        display_name: The human-readable name.
        created_at: When the organization was created.

    Attributes:
        id: The organization's id.
        name: The organization's slug.
        display_name: The human-readable name.
        created_at: When the organization was created.

    """

    def __init__(
        self,
        client: tilde.data.Client[RepositoryT],
        *,
        id: str = "",
        name: str = "",
        display_name: str = "",
        created_at: datetime | None = None,
    ) -> None:
        self._client = client
        self.id = id
        self.name = name
        self.display_name = display_name
        self.created_at = created_at

    @classmethod
    def from_dict(
        cls, client: tilde.data.Client[RepositoryT], data: Mapping[str, Any]
    ) -> Organization[RepositoryT]:
        """Build an organization from an ``Organization`` response object.

        Args:
            client: The client that fetched it.
            data: The decoded JSON object.

        Returns:
            The organization.

        """
        return cls(
            client,
            id=_text(data, "id"),
            name=_text(data, "name"),
            display_name=_text(data, "display_name"),
            created_at=parse_timestamp(data.get("created_at")),
        )

    @property
    def repositories(self) -> tilde.data.Repositories[RepositoryT]:
        """The organization's repositories (a new collection object on each access)."""
        return tilde.data.Repositories(self._client, self.name)

    @property
    def members(self) -> Members:
        """The organization's members (a new collection object on each access)."""
        return Members(self._client, self.name)

    @property
    def groups(self) -> Groups:
        """The organization's groups (a new collection object on each access)."""
        return Groups(self._client, self.name)

    @property
    def policies(self) -> Policies:
        """The organization's policies (a new collection object on each access)."""
        return Policies(self._client, self.name)

    @property
    def roles(self) -> Roles:
        """The organization's roles (a new collection object on each access)."""
        return Roles(self._client, self.name)

    @property
    def agents(self) -> Agents:
        """The organization's agents (a new collection object on each access)."""
        return Agents(self._client, self.name)

    @property
    def connectors(self) -> Connectors:
        """The organization's connectors (a new collection object on each access)."""
        return Connectors(self._client, self.name)

    def delete(self) -> None:
        """Delete the organization (``DELETE /organizations/{name}``)."""
        Organizations(self._client).delete(self.name)

    def __repr__(self) -> str:
        return f"Organization({self.name!r})"


class Organizations(Generic[RepositoryT]):
    """The organizations the caller can see.

    Generic, like `Organization`, over the client's repository class.

    Args:
        client: The client to send requests with.

    """

    def __init__(self, client: tilde.data.Client[RepositoryT]) -> None:
        self._client = client

    def list(self, *, amount: int | None = None) -> PaginatedIterator[Organization[RepositoryT]]:
        """List the organizations the caller belongs to (one request, made on first iteration).

        Args:
            amount: Stop after this many organizations.

        Returns:
            A lazy, single-pass iterator of `Organization`.

        """
        return self._client._list_once(
            "/organizations", lambda data: Organization.from_dict(self._client, data), amount=amount
        )

    def get(self, name: str) -> Organization[RepositoryT]:
        """Fetch one organization.

        Args:
            name: The organization's slug.

        Returns:
            The organization.

        Raises:
            NotFoundError: There is no such organization (or the caller may not see it).

        """
        path = f"/organizations/{segment(check_org(name))}"
        return Organization.from_dict(self._client, self._client._get_json(path))

    def create(self, name: str, display_name: str) -> Organization[RepositoryT]:
        """Create an organization; the caller becomes its first member.

        Args:
            name: The slug, matching ``^[a-z0-9][a-z0-9-]{1,62}$``.
            display_name: The human-readable name.

        Returns:
            The new organization.

        Raises:
            ConflictError: The name is taken.
            BadRequestError: The name is not a valid slug.

        """
        body = self._client._post_json("/organizations", json={"name": name, "display_name": display_name})
        return Organization.from_dict(self._client, body or {"name": name, "display_name": display_name})

    def delete(self, name: str) -> None:
        """Delete an organization.

        Args:
            name: The organization's slug.

        """
        self._client._delete(f"/organizations/{segment(check_org(name))}")

    def __repr__(self) -> str:
        return "Organizations()"
