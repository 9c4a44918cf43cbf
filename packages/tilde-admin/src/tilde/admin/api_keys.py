"""API keys of roles and agents: ``role.api_keys`` and ``agent.api_keys``.

A key authenticates as its role (``trk-`` tokens) or agent (``tak-`` tokens). The full token is returned only
once, by `APIKeys.create`; afterwards the server shows its last characters (``token_hint``). Revoking a key
refuses it from the next request on; revoked keys stay listed, with ``revoked_at`` set.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tilde.admin._collection import fetch, item_path, post
from tilde.core.names import check_id
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _text

if TYPE_CHECKING:
    import tilde.core
    from tilde.core.pagination import PaginatedIterator

__all__ = ["APIKey", "APIKeys"]


class APIKey:
    """One API key of a role or an agent.

    Args:
        client: The client to send requests with.
        base_path: The key collection's path (``O/roles/{name}/auth/keys`` or ``O/agents/{name}/auth/keys``).
        id: The key's id.
        name: Its name.
        description: Its description.
        token_hint: The token's last characters.
        token: The full token (only on the key `APIKeys.create` returns).
        created_at: When it was created.
        last_used_at: When it last authenticated a request.
        revoked_at: When it was revoked, if it was.

    Attributes:
        id: The key's id.
        name: Its name.
        description: Its description.
        token_hint: The token's last characters.
        token: The full token on the key `APIKeys.create` returns; ``""`` on every other.
        created_at: When it was created.
        last_used_at: When it last authenticated a request.
        revoked_at: When it was revoked, if it was.

    """

    def __init__(
        self,
        client: tilde.core.Client,
        base_path: str,
        *,
        id: str = "",
        name: str = "",
        description: str = "",
        token_hint: str = "",
        token: str = "",
        created_at: datetime | None = None,
        last_used_at: datetime | None = None,
        revoked_at: datetime | None = None,
    ) -> None:
        self._client = client
        self._base_path = base_path
        self.id = id
        self.name = name
        self.description = description
        self.token_hint = token_hint
        self.token = token
        self.created_at = created_at
        self.last_used_at = last_used_at
        self.revoked_at = revoked_at

    @classmethod
    def from_dict(cls, client: tilde.core.Client, base_path: str, data: Mapping[str, Any]) -> APIKey:
        """Build from an ``APIToken`` or ``APITokenCreated`` response object.

        Args:
            client: The client that fetched it.
            base_path: The key collection's path.
            data: The decoded JSON object.

        Returns:
            The key (with ``token`` only when the object carried one).

        """
        return cls(
            client,
            base_path,
            id=_text(data, "id"),
            name=_text(data, "name"),
            description=_text(data, "description"),
            token_hint=_text(data, "token_hint"),
            token=_text(data, "token"),
            created_at=parse_timestamp(data.get("created_at")),
            last_used_at=parse_timestamp(data.get("last_used_at")),
            revoked_at=parse_timestamp(data.get("revoked_at")),
        )

    def revoke(self) -> None:
        """Revoke the key; the server refuses it from the next request on."""
        APIKeys(self._client, self._base_path).delete(self.id)

    def delete(self) -> None:
        """Revoke the key (the same as `revoke`)."""
        self.revoke()

    def __repr__(self) -> str:
        # Never the token: reprs end up in logs.
        return f"APIKey(name={self.name!r}, id={self.id!r})"


class APIKeys:
    """The API keys of one role or agent.

    Args:
        client: The client to send requests with.
        base_path: The collection's path, e.g. ``/organizations/o/agents/bot/auth/keys``.

    """

    def __init__(self, client: tilde.core.Client, base_path: str) -> None:
        self._client = client
        self._path = base_path

    def _build(self, data: Mapping[str, Any]) -> APIKey:
        return APIKey.from_dict(self._client, self._path, data)

    def list(
        self, *, after: str | None = None, amount: int | None = None, page_size: int | None = None
    ) -> PaginatedIterator[APIKey]:
        """List the keys, revoked ones included (never their tokens).

        Args:
            after: Start after this cursor.
            amount: Yield at most this many keys.
            page_size: Keys per request.

        Returns:
            A lazy, single-pass iterator of `APIKey`.

        """
        return self._client._paginate(
            self._path, self._build, amount=amount, page_size=page_size, after=after
        )

    def get(self, key_id: str) -> APIKey:
        """Fetch one key (without its token).

        Args:
            key_id: The key's id.

        Returns:
            The key.

        Raises:
            NotFoundError: There is no such key.

        """
        return fetch(self._client, item_path(self._path, check_id(key_id, "API key id")), self._build)

    def create(self, name: str) -> APIKey:
        """Create a key.

        Args:
            name: A name to recognise it by.

        Returns:
            The new key; its ``token`` is the full secret, shown this once.

        Raises:
            ForbiddenError: The caller may not mint keys here (agents never may).

        """
        return post(self._client, self._path, {"name": name}, self._build)

    def delete(self, key_id: str) -> None:
        """Revoke a key.

        Args:
            key_id: The key's id.

        """
        self._client._delete(item_path(self._path, check_id(key_id, "API key id")))

    def __repr__(self) -> str:
        return f"APIKeys(path={self._path!r})"
