"""Members of an organization: ``org.members``.

The member list is a single-shot list (the server returns every member in one ``{"results": [...]}`` body),
and the add endpoint answers with nothing the SDK reads, so `Members.create` re-reads the list to hand back a
populated `Member`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from tilde.admin._collection import item_path, org_path
from tilde.core.errors import api_error_for_status
from tilde.core.names import check_id
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _text

if TYPE_CHECKING:
    import tilde.core
    from tilde.core.pagination import PaginatedIterator

__all__ = ["Member", "Members"]


def _looks_like_user_id(value: str) -> bool:
    """Whether ``value`` has the form of a user id (a UUID), so `Members.delete` can skip the lookup."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Member:
    """A user's membership of an organization.

    Attributes:
        user_id: The user's id; `Members.delete` and `Member.delete` address members by it.
        username: The user's login name.
        full_name: The user's display name (``""`` when unknown).
        email: The user's e-mail address (``""`` when hidden or unknown).
        organization_id: The id of the organization.
        joined_at: When the user joined, if the server says.

    """

    def __init__(
        self,
        client: tilde.core.Client,
        org: str,
        *,
        user_id: str = "",
        username: str = "",
        full_name: str = "",
        email: str = "",
        organization_id: str = "",
        joined_at: datetime | None = None,
    ) -> None:
        self._client = client
        self._org = org
        self.user_id = user_id
        self.username = username
        self.full_name = full_name
        self.email = email
        self.organization_id = organization_id
        self.joined_at = joined_at

    @classmethod
    def from_dict(cls, client: tilde.core.Client, org: str, data: Mapping[str, Any]) -> Member:
        """Build a member from a ``Membership`` response object (``null`` strings become ``""``).

        Args:
            client: The client that fetched it.
            org: The organization's name.
            data: The decoded JSON object.

        Returns:
            The member.

        """
        return cls(
            client,
            org,
            user_id=_text(data, "user_id"),
            username=_text(data, "username"),
            full_name=_text(data, "full_name"),
            email=_text(data, "email"),
            organization_id=_text(data, "organization_id"),
            joined_at=parse_timestamp(data.get("joined_at")),
        )

    def delete(self) -> None:
        """Remove this user from the organization (``DELETE /organizations/{org}/members/{user_id}``)."""
        Members(self._client, self._org).delete(self.user_id)

    def __repr__(self) -> str:
        return f"Member({self.username!r})"


class Members:
    """The members of one organization.

    Args:
        client: The client to send requests with.
        org: The organization's name.

    """

    def __init__(self, client: tilde.core.Client, org: str) -> None:
        self._client = client
        self._org = org

    @property
    def _path(self) -> str:
        return org_path(self._org, "members")

    def list(self, *, amount: int | None = None) -> PaginatedIterator[Member]:
        """List the members (one request, made on first iteration).

        Args:
            amount: Stop after this many members.

        Returns:
            A lazy, single-pass iterator of `Member`.

        """
        return self._client._list_once(
            self._path, partial(Member.from_dict, self._client, self._org), amount=amount
        )

    def get(self, user_id: str) -> Member:
        """Find a member by user id or username.

        The server has no single-member endpoint, so this lists the members and picks the match.

        Args:
            user_id: The member's user id, or their username.

        Returns:
            The member.

        Raises:
            NotFoundError: No member has that user id or username.

        """
        for member in self.list():
            if user_id in (member.user_id, member.username):
                return member
        raise api_error_for_status(
            404,
            message=f"no member {user_id!r} in organization {self._org!r}",
            code="not_found",
            method="GET",
            url=self._path,
        )

    def create(self, username: str) -> Member:
        """Add a user to the organization by username.

        Args:
            username: The user to add.

        Returns:
            The new member, re-read from the member list.

        Raises:
            NotFoundError: The user was added but does not appear in the member list.

        """
        self._client._post_json(self._path, json={"username": username})
        return self.get(username)

    def delete(self, user_id: str) -> None:
        """Remove a user from the organization, by user id or username (like `get`).

        A user id is sent as is. Anything else is looked up in the member list first (one more request) and
        the matching member's user id is sent.

        Args:
            user_id: The member's user id, or their username.

        Raises:
            NotFoundError: No member has that user id or username.

        """
        if not _looks_like_user_id(user_id):
            user_id = self.get(user_id).user_id
        self._client._delete(item_path(self._path, check_id(user_id, "user id")))

    def __repr__(self) -> str:
        return f"Members(org={self._org!r})"
