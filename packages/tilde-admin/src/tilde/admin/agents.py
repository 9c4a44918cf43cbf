"""Agents: ``org.agents``, non-human identities for automated tools and AI assistants.

An agent carries metadata and may have an inline policy; what it may do is its policies, capped by the
rights of the principal that created it. Agents are addressed by name; their keys (``tak-`` tokens) are
``agent.api_keys`` and their secrets, injected into sandboxes that run as the agent, ``agent.secrets``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from tilde.admin._collection import fetch, given, item_path, org_path, post, put
from tilde.admin.api_keys import APIKeys
from tilde.admin.secrets import Secrets
from tilde.core.names import check_agent
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _mapping, _text

if TYPE_CHECKING:
    import tilde.core
    from tilde.core.pagination import PaginatedIterator

__all__ = ["Agent", "Agents"]


class Agent:
    """An agent of an organization.

    Args:
        client: The client to send requests with.
        org: The organization's name.
        id: The agent's id.
        name: Its name (what the API addresses it by).
        description: Its description.
        metadata: Free-form key/value metadata.
        inline_policy: Its own policy text (``""`` when it has none).
        inline_policy_updated_at: When the inline policy last changed.
        organization_id: The organization's id.
        created_by_type: ``user`` or ``role``.
        created_by: The id of the principal that created it.
        created_by_name: The name of the principal that created it.
        created_at: When it was created.
        last_used_at: When one of its keys last authenticated a request.

    Attributes:
        id: The agent's id (what policy attachments, group memberships and ``run_as`` use).
        name: Its name.
        description: Its description.
        metadata: Free-form key/value metadata (``{}`` when it has none).
        inline_policy: Its own policy text (``""`` when it has none).
        inline_policy_updated_at: When the inline policy last changed.
        organization_id: The organization's id.
        created_by_type: ``user`` or ``role``.
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
        metadata: dict[str, Any] | None = None,
        inline_policy: str = "",
        inline_policy_updated_at: datetime | None = None,
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
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.inline_policy = inline_policy
        self.inline_policy_updated_at = inline_policy_updated_at
        self.organization_id = organization_id
        self.created_by_type = created_by_type
        self.created_by = created_by
        self.created_by_name = created_by_name
        self.created_at = created_at
        self.last_used_at = last_used_at

    @classmethod
    def from_dict(cls, client: tilde.core.Client, org: str, data: Mapping[str, Any]) -> Agent:
        """Build from an ``Agent`` response object (a ``null`` metadata becomes ``{}``).

        Args:
            client: The client that fetched it.
            org: The organization's name.
            data: The decoded JSON object.

        Returns:
            The agent.

        """
        return cls(
            client,
            org,
            id=_text(data, "id"),
            name=_text(data, "name"),
            description=_text(data, "description"),
            metadata=_mapping(data.get("metadata")),
            inline_policy=_text(data, "inline_policy"),
            inline_policy_updated_at=parse_timestamp(data.get("inline_policy_updated_at")),
            organization_id=_text(data, "organization_id"),
            created_by_type=_text(data, "created_by_type"),
            created_by=_text(data, "created_by"),
            created_by_name=_text(data, "created_by_name"),
            created_at=parse_timestamp(data.get("created_at")),
            last_used_at=parse_timestamp(data.get("last_used_at")),
        )

    @property
    def _path(self) -> str:
        return item_path(org_path(self._org, "agents"), self.name)

    @property
    def api_keys(self) -> APIKeys:
        """The agent's API keys (``tak-`` tokens)."""
        return APIKeys(self._client, f"{self._path}/auth/keys")

    @property
    def secrets(self) -> Secrets:
        """The agent's secrets; in a sandbox running as the agent they override repository secrets."""
        return Secrets(self._client, f"{self._path}/secrets")

    def update(
        self,
        *,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        inline_policy: str | None = None,
    ) -> Agent:
        """Change some of the agent's fields; only the given ones are sent.

        Args:
            description: A new description.
            metadata: New metadata (replacing all of it).
            inline_policy: A new inline policy text; ``""`` removes it.

        Returns:
            A new object with the updated agent (this one is left as it was).

        Raises:
            BadRequestError: ``inline_policy`` is not a valid policy.
            ForbiddenError: The caller may not change this agent (an agent never changes inline policies).

        """
        body = given(
            description=description,
            metadata=None if metadata is None else dict(metadata),
            inline_policy=inline_policy,
        )
        return put(self._client, self._path, body, partial(Agent.from_dict, self._client, self._org))

    def delete(self) -> None:
        """Delete the agent; its keys stop working."""
        self._client._delete(self._path)

    def __repr__(self) -> str:
        return f"Agent({self.name!r})"


class Agents:
    """The agents of one organization.

    Args:
        client: The client to send requests with.
        org: The organization's name.

    """

    def __init__(self, client: tilde.core.Client, org: str) -> None:
        self._client = client
        self._org = org

    @property
    def _path(self) -> str:
        return org_path(self._org, "agents")

    def _build(self, data: Mapping[str, Any]) -> Agent:
        return Agent.from_dict(self._client, self._org, data)

    def list(
        self, *, after: str | None = None, amount: int | None = None, page_size: int | None = None
    ) -> PaginatedIterator[Agent]:
        """List the agents.

        Args:
            after: Start after this cursor (an agent name).
            amount: Yield at most this many agents.
            page_size: Agents per request.

        Returns:
            A lazy, single-pass iterator of `Agent`.

        """
        return self._client._paginate(
            self._path, self._build, amount=amount, page_size=page_size, after=after
        )

    def get(self, name: str) -> Agent:
        """Fetch one agent.

        Args:
            name: The agent's name.

        Returns:
            The agent.

        Raises:
            NotFoundError: There is no such agent.

        """
        return fetch(self._client, item_path(self._path, check_agent(name)), self._build)

    def create(self, name: str, *, description: str = "", metadata: Mapping[str, Any] | None = None) -> Agent:
        """Create an agent (set its inline policy afterwards with `Agent.update`).

        Args:
            name: Its name, matching ``^[a-z0-9][a-z0-9-]{1,62}$``.
            description: A description.
            metadata: Free-form key/value metadata (sent only when given).

        Returns:
            The new agent.

        Raises:
            ConflictError: The name is taken.
            ForbiddenError: The caller may not create agents (agents never may).

        """
        body: dict[str, Any] = {"name": name, "description": description}
        if metadata is not None:
            body["metadata"] = dict(metadata)
        return post(self._client, self._path, body, self._build)

    def delete(self, name: str) -> None:
        """Delete an agent; its keys stop working.

        Args:
            name: The agent's name.

        """
        self._client._delete(item_path(self._path, check_agent(name)))

    def __repr__(self) -> str:
        return f"Agents(org={self._org!r})"
