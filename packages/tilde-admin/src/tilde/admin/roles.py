"""Roles: ``org.roles``, non-human identities for automation (CI pipelines and the like).

A role has no metadata and no inline policy: what it may do comes from the policies attached to it, directly
or through groups. Roles are addressed by name; their keys (``trk-`` tokens) are ``role.api_keys``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tilde.admin._collection import fetch, item_path, org_path, post
from tilde.admin.api_keys import APIKeys
from tilde.core.names import check_role
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _text

if TYPE_CHECKING:
    import tilde.core
    from tilde.core.pagination import PaginatedIterator

__all__ = ["Role", "Roles"]


class Role:
    """A role of an organization.

    Args:
        client: The client to send requests with.
        org: The organization's name.
        id: The role's id.
        name: Its name (what the API addresses it by).
        description: Its description.
        organization_id: The organization's id.
        created_by_type: The type of the principal that created it.
        created_by: The id of the principal that created it.
        created_by_name: The name of the principal that created it.
        created_at: When it was created.
        last_used_at: When one of its keys last authenticated a request.

    Attributes:
        id: The role's id (what policy attachments and group memberships use).
        name: Its name.
        description: Its description.
        organization_id: The organization's id.
        created_by_type: The type of the principal that created it.
        created_by: The id of the principal that created it.
        created_by_name: The name of the principal that created it.
        created_at: When it was created.
        last_used_at: When one of its keys last authenticated a request.

    """

    def __init__(
        self,
        client: tilde.core.Client,
        org: str,
        *,
        id: str = "",
        name: str = "",
        description: str = "",
        organization_id: str = "",
        created_by_type: str = "",
        created_by: str = "",
        created_by_name: str = "",
        created_at: datetime | None = None,
        last_used_at: datetime | None = None,
    ) -> None:
        self._client = client
        self._org = org
        self.id = id
        self.name = name
        self.description = description
        self.organization_id = organization_id
        self.created_by_type = created_by_type
        self.created_by = created_by
        self.created_by_name = created_by_name
        self.created_at = created_at
        self.last_used_at = last_used_at

    @classmethod
    def from_dict(cls, client: tilde.core.Client, org: str, data: Mapping[str, Any]) -> Role:
        """Build from a ``Role`` response object.

        Args:
            client: The client that fetched it.
            org: The organization's name.
            data: The decoded JSON object.

        Returns:
            The role.

        """
        return cls(
            client,
            org,
            id=_text(data, "id"),
            name=_text(data, "name"),
            description=_text(data, "description"),
            organization_id=_text(data, "organization_id"),
            created_by_type=_text(data, "created_by_type"),
            created_by=_text(data, "created_by"),
            created_by_name=_text(data, "created_by_name"),
            created_at=parse_timestamp(data.get("created_at")),
            last_used_at=parse_timestamp(data.get("last_used_at")),
        )

    @property
    def api_keys(self) -> APIKeys:
        """The role's API keys (``trk-`` tokens)."""
        return APIKeys(self._client, f"{item_path(org_path(self._org, 'roles'), self.name)}/auth/keys")

    def delete(self) -> None:
        """Delete the role; its keys stop working."""
        Roles(self._client, self._org).delete(self.name)

    def __repr__(self) -> str:
        return f"Role({self.name!r})"


class Roles:
    """The roles of one organization.

    Args:
        client: The client to send requests with.
        org: The organization's name.

    """

    def __init__(self, client: tilde.core.Client, org: str) -> None:
        self._client = client
        self._org = org

    @property
    def _path(self) -> str:
        return org_path(self._org, "roles")

    def _build(self, data: Mapping[str, Any]) -> Role:
        return Role.from_dict(self._client, self._org, data)

    def list(
        self, *, after: str | None = None, amount: int | None = None, page_size: int | None = None
    ) -> PaginatedIterator[Role]:
        """List the roles.

        Args:
            after: Start after this cursor (a role name).
            amount: Yield at most this many roles.
            page_size: Roles per request.

        Returns:
            A lazy, single-pass iterator of `Role`.

        """
        return self._client._paginate(
            self._path, self._build, amount=amount, page_size=page_size, after=after
        )

    def get(self, name: str) -> Role:
        """Fetch one role.

        Args:
            name: The role's name.

        Returns:
            The role.

        Raises:
            NotFoundError: There is no such role.

        """
        return fetch(self._client, item_path(self._path, check_role(name)), self._build)

    def create(self, name: str, *, description: str = "") -> Role:
        """Create a role.

        Args:
            name: Its name, matching ``^[a-z0-9][a-z0-9-]{1,62}$``.
            description: A description.

        Returns:
            The new role.

        Raises:
            ConflictError: The name is taken.

        """
        body = {"name": name, "description": description}
        return post(self._client, self._path, body, self._build)

    def delete(self, name: str) -> None:
        """Delete a role; its keys stop working.

        Args:
            name: The role's name.

        """
        self._client._delete(item_path(self._path, check_role(name)))

    def __repr__(self) -> str:
        return f"Roles(org={self._org!r})"
