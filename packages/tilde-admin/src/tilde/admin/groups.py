"""Groups: ``org.groups``, sets of principals that policies can be attached to at once.

A group's members may be users, roles, agents or other groups (a member group's members belong to the outer
group too). The server has no member-list endpoint: members come with the group (``GET O/groups/{id}``), so
`GroupMembers.list` re-reads the group, and `GroupMembers.create` does too, to hand back a populated
`GroupMember`.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from tilde.admin._collection import fetch, given, item_path, org_path, post, put, unwrap
from tilde.admin._wire import built, results
from tilde.admin.policies import Attachment
from tilde.core.names import check_uuid
from tilde.core.pagination import PageResult, PaginatedIterator, check_amount
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _CompactRepr, _text

if TYPE_CHECKING:
    import tilde.core

__all__ = ["EffectiveGroup", "Group", "GroupMember", "GroupMembers", "Groups"]


@dataclass(slots=True, repr=False)
class GroupMember(_CompactRepr):
    """A member of a group.

    Attributes:
        subject_type: ``user``, ``group``, ``role`` or ``agent``.
        subject_id: The member's id.
        display_name: The member's display name, when the server reports it.
        username: The user's login name (users only).
        added_at: When the member was added.

    """

    subject_type: str = ""
    subject_id: str = ""
    display_name: str = ""
    username: str = ""
    added_at: datetime | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupMember:
        """Build from a ``GroupMember`` response object.

        Args:
            data: The decoded JSON object.

        Returns:
            The member.

        """
        return cls(
            subject_type=_text(data, "subject_type"),
            subject_id=_text(data, "subject_id"),
            display_name=_text(data, "display_name"),
            username=_text(data, "username"),
            added_at=parse_timestamp(data.get("added_at")),
        )


@dataclass(slots=True, repr=False)
class EffectiveGroup(_CompactRepr):
    """A group a principal belongs to, directly or through another group.

    Attributes:
        group_id: The group's id.
        group_name: The group's name.
        description: The group's description.
        source: ``direct`` (the principal is a member) or ``group`` (through a member group).
        source_name: The group it comes through, for ``group``.

    """

    group_id: str = ""
    group_name: str = ""
    description: str = ""
    source: str = ""
    source_name: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EffectiveGroup:
        """Build from an ``EffectiveGroup`` response object.

        Args:
            data: The decoded JSON object.

        Returns:
            The effective group.

        """
        return cls(
            group_id=_text(data, "group_id"),
            group_name=_text(data, "group_name"),
            description=_text(data, "description"),
            source=_text(data, "source"),
            source_name=_text(data, "source_name"),
        )


def _members_of(body: Mapping[str, Any]) -> builtins.list[GroupMember]:
    return built(body.get("members"), GroupMember.from_dict)


class GroupMembers:
    """The members of one group.

    Args:
        client: The client to send requests with.
        org: The organization's name.
        group_id: The group's id.

    """

    def __init__(self, client: tilde.core.Client, org: str, group_id: str) -> None:
        self._client = client
        self._org = org
        self._group_id = group_id

    @property
    def _group_path(self) -> str:
        return item_path(org_path(self._org, "groups"), self._group_id)

    def _read(self) -> builtins.list[GroupMember]:
        return fetch(self._client, self._group_path, _members_of)

    def list(self, *, amount: int | None = None) -> PaginatedIterator[GroupMember]:
        """List the members (one ``GET`` of the group, on first iteration).

        Args:
            amount: Stop after this many members.

        Returns:
            A lazy, single-pass iterator of `GroupMember`.

        """
        check_amount(amount)
        return PaginatedIterator(lambda _cursor: PageResult(self._read()), limit=amount)

    def create(self, *, subject_type: str, subject_id: str) -> GroupMember:
        """Add a member.

        Args:
            subject_type: ``user``, ``group``, ``role`` or ``agent``.
            subject_id: The member's id.

        Returns:
            The member as the re-read group reports it, or a bare `GroupMember` with the given type and id
            when the group does not list it.

        Raises:
            ConflictError: Adding the group would make a cycle of groups.

        """
        body = {"subject_type": subject_type, "subject_id": subject_id}
        self._client._post_json(f"{self._group_path}/members", json=body)
        for member in self._read():
            if (member.subject_type, member.subject_id) == (subject_type, subject_id):
                return member
        return GroupMember(subject_type=subject_type, subject_id=subject_id)

    def delete(self, *, subject_type: str, subject_id: str) -> None:
        """Remove a member.

        Args:
            subject_type: ``user``, ``group``, ``role`` or ``agent``.
            subject_id: The member's id.

        """
        params = {"subject_type": subject_type, "subject_id": subject_id}
        self._client._delete(f"{self._group_path}/members", params=params)

    def __repr__(self) -> str:
        return f"GroupMembers(group_id={self._group_id!r})"


class Group:
    """A group of an organization.

    Args:
        client: The client to send requests with.
        org: The organization's name.
        id: The group's id.
        name: Its name.
        description: Its description.
        organization_id: The organization's id.
        created_by_type: The type of the principal that created it.
        created_by: The id of the principal that created it.
        created_at: When it was created.
        attachments: The policies attached to it (filled by `Groups.get`).

    Attributes:
        id: The group's id.
        name: Its name.
        description: Its description.
        organization_id: The organization's id.
        created_by_type: The type of the principal that created it.
        created_by: The id of the principal that created it.
        created_at: When it was created.

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
        created_at: datetime | None = None,
        attachments: builtins.list[Attachment] | None = None,
    ) -> None:
        self._client = client
        self._org = org
        self.id = id
        self.name = name
        self.description = description
        self.organization_id = organization_id
        self.created_by_type = created_by_type
        self.created_by = created_by
        self.created_at = created_at
        self._attachments = builtins.list(attachments or [])

    @classmethod
    def from_dict(cls, client: tilde.core.Client, org: str, data: Mapping[str, Any]) -> Group:
        """Build from a ``Group`` object, or a ``{group, members, attachments}`` body.

        Args:
            client: The client that fetched it.
            org: The organization's name.
            data: The decoded JSON object.

        Returns:
            The group.

        """
        group = unwrap(data, "group")
        return cls(
            client,
            org,
            id=_text(group, "id"),
            name=_text(group, "name"),
            description=_text(group, "description"),
            organization_id=_text(group, "organization_id"),
            created_by_type=_text(group, "created_by_type"),
            created_by=_text(group, "created_by"),
            created_at=parse_timestamp(group.get("created_at")),
            attachments=built(data.get("attachments"), Attachment.from_dict),
        )

    @property
    def _path(self) -> str:
        return item_path(org_path(self._org, "groups"), self.id)

    @property
    def members(self) -> GroupMembers:
        """The group's members (a new collection object on each access)."""
        return GroupMembers(self._client, self._org, self.id)

    @property
    def attachments(self) -> builtins.list[Attachment]:
        """The policies attached to the group (a copy; filled only on a group from `Groups.get`)."""
        return builtins.list(self._attachments)

    def update(self, *, name: str | None = None, description: str | None = None) -> Group:
        """Rename the group or change its description; only the given fields are sent.

        Args:
            name: A new name.
            description: A new description.

        Returns:
            A new object with the updated group (this one is left as it was).

        """
        body = given(name=name, description=description)
        return put(self._client, self._path, body, partial(Group.from_dict, self._client, self._org))

    def delete(self) -> None:
        """Delete the group."""
        self._client._delete(self._path)

    def __repr__(self) -> str:
        return f"Group({self.name!r})"


class Groups:
    """The groups of one organization.

    Args:
        client: The client to send requests with.
        org: The organization's name.

    """

    def __init__(self, client: tilde.core.Client, org: str) -> None:
        self._client = client
        self._org = org

    @property
    def _path(self) -> str:
        return org_path(self._org, "groups")

    def _item(self, group_id: str) -> str:
        return item_path(self._path, check_uuid(group_id, "group id"))

    def _build(self, data: Mapping[str, Any]) -> Group:
        return Group.from_dict(self._client, self._org, data)

    def list(
        self, *, after: str | None = None, amount: int | None = None, page_size: int | None = None
    ) -> PaginatedIterator[Group]:
        """List the groups.

        Args:
            after: Start after this cursor.
            amount: Yield at most this many groups.
            page_size: Groups per request.

        Returns:
            A lazy, single-pass iterator of `Group` (without attachments).

        """
        return self._client._paginate(
            self._path, self._build, amount=amount, page_size=page_size, after=after
        )

    def get(self, group_id: str) -> Group:
        """Fetch one group with its attachments (its members: ``group.members.list()``).

        Args:
            group_id: The group's id.

        Returns:
            The group.

        Raises:
            NotFoundError: There is no such group.

        """
        return fetch(self._client, self._item(group_id), self._build)

    def create(self, name: str, *, description: str = "") -> Group:
        """Create a group (without members).

        Args:
            name: Its name.
            description: A description (sent only when not empty).

        Returns:
            The new group.

        Raises:
            ConflictError: The name is taken.

        """
        body = {"name": name}
        if description:
            body["description"] = description
        return post(self._client, self._path, body, self._build)

    def delete(self, group_id: str) -> None:
        """Delete a group.

        Args:
            group_id: The group's id.

        """
        self._client._delete(self._item(group_id))

    def effective(self, principal_type: str, principal_id: str) -> builtins.list[EffectiveGroup]:
        """List the groups a principal belongs to, directly or through nested groups.

        Args:
            principal_type: ``user``, ``group``, ``role`` or ``agent``.
            principal_id: The principal's id.

        Returns:
            The effective groups, each with where the membership comes from.

        """
        params = {"principal_type": principal_type, "principal_id": principal_id}
        body = self._client._get_json(org_path(self._org, "effective-groups"), params=params)
        return [EffectiveGroup.from_dict(item) for item in results(body)]

    def __repr__(self) -> str:
        return f"Groups(org={self._org!r})"
