"""Secrets: write-only-ish key/value pairs injected into sandboxes as environment variables.

The same shape exists at two scopes, a repository (``repo.secrets``) and an agent (``agent.secrets``, with the
agents module); `Secrets` takes the collection's path so it serves both. Listing never returns values: a
`Secret` from a list fetches its value on first access.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from tilde.admin._collection import fetch, item_path
from tilde.core.names import check_secret_key
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _optional_text, _text

if TYPE_CHECKING:
    import tilde.core
    from tilde.core.pagination import PaginatedIterator

__all__ = ["Secret", "Secrets"]


class Secret:
    """One secret. ``value`` is fetched from the server on first access when it is not known yet.

    Attributes:
        name: The secret's key (e.g. ``API_TOKEN``); it becomes the environment variable's name.
        created_by_type: ``user``, ``role`` or ``agent``.
        created_by: The id of the principal that wrote it.
        created_at: When it was first written.
        updated_at: When it was last written.

    """

    def __init__(
        self,
        client: tilde.core.Client,
        base_path: str,
        name: str,
        *,
        value: str | None = None,
        created_by_type: str = "",
        created_by: str = "",
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        self._client = client
        self._base_path = base_path
        self.name = name
        self._value = value
        self.created_by_type = created_by_type
        self.created_by = created_by
        self.created_at = created_at
        self.updated_at = updated_at

    @classmethod
    def from_dict(cls, client: tilde.core.Client, base_path: str, data: Mapping[str, Any]) -> Secret:
        """Build a secret from a list entry or a ``{key, value}`` object (``name`` is accepted for ``key``).

        Args:
            client: The client that fetched it.
            base_path: The collection's path.
            data: The decoded JSON object.

        Returns:
            The secret (with its value when the object carried one).

        """
        return cls(
            client,
            base_path,
            _text(data, "key") or _text(data, "name"),
            value=_optional_text(data, "value"),
            created_by_type=_text(data, "created_by_type"),
            created_by=_text(data, "created_by"),
            created_at=parse_timestamp(data.get("created_at")),
            updated_at=parse_timestamp(data.get("updated_at")),
        )

    @property
    def value(self) -> str:
        """The secret's value (one ``GET`` the first time, when it came from a list)."""
        if self._value is None:
            self._value = Secrets(self._client, self._base_path).get(self.name).value
        return self._value

    def delete(self) -> None:
        """Delete this secret."""
        Secrets(self._client, self._base_path).delete(self.name)

    def __repr__(self) -> str:
        # Never the value: reprs end up in logs.
        return f"Secret({self.name!r})"


class Secrets:
    """The secrets of a repository (or, with the agents module, of an agent).

    Args:
        client: The client to send requests with.
        base_path: The collection's path, e.g. ``/organizations/o/repositories/r/secrets``.

    """

    def __init__(self, client: tilde.core.Client, base_path: str) -> None:
        self._client = client
        self._path = base_path

    def _item(self, name: str) -> str:
        return item_path(self._path, check_secret_key(name))

    def list(self, *, amount: int | None = None) -> PaginatedIterator[Secret]:
        """List the secrets' names and metadata (values are not included).

        Args:
            amount: Stop after this many secrets.

        Returns:
            A lazy, single-pass iterator of `Secret` (one request, on first iteration).

        """
        return self._client._list_once(
            self._path, partial(Secret.from_dict, self._client, self._path), amount=amount
        )

    def get(self, name: str) -> Secret:
        """Fetch a secret with its value.

        Args:
            name: The secret's key.

        Returns:
            The secret, ``value`` filled in.

        Raises:
            NotFoundError: There is no such secret.

        """
        return fetch(self._client, self._item(name), partial(Secret.from_dict, self._client, self._path))

    def create(self, name: str, value: str) -> Secret:
        """Create a secret, or replace the value of an existing one.

        Args:
            name: The key, matching ``^[A-Za-z_][A-Za-z0-9_-]{0,255}$``.
            value: The value (not empty).

        Returns:
            The secret, holding the value given.

        """
        self._client._put_json(self._item(name), json={"value": value})
        return Secret(self._client, self._path, name, value=value)

    def delete(self, name: str) -> None:
        """Delete a secret.

        Args:
            name: The secret's key.

        """
        self._client._delete(self._item(name))

    def __repr__(self) -> str:
        return f"Secrets(path={self._path!r})"
