"""Connectors: credentials for an external source (S3, GCS, git, Google Drive) that imports read from.

They belong to an organization (``org.connectors``) and are attached to the repositories that may import
through them (``repo.connectors``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from tilde.admin._collection import fetch, item_path, org_path, post
from tilde.core.names import check_uuid, segment
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _optional_text, _text

if TYPE_CHECKING:
    import tilde.core
    from tilde.core.pagination import PaginatedIterator

__all__ = ["Connector", "Connectors", "RepositoryConnectors"]


def _item(path: str, connector_id: str) -> str:
    return item_path(path, check_uuid(connector_id, "connector id"))


class Connector:
    """A connector of an organization.

    Attributes:
        id: The connector's id (what every other call addresses it by).
        name: Its name.
        type: ``s3``, ``gcs``, ``git`` or ``google_drive``.
        source_uri: Where it reads from, e.g. ``s3://bucket/prefix/``.
        disabled: Whether it is disabled (imports through it then fail with `LockedError`).
        public_key: For ``git`` connectors, the Ed25519 public key to install as a deploy key.
        created_at: When it was created.

    """

    def __init__(
        self,
        client: tilde.core.Client,
        org: str,
        *,
        id: str = "",
        name: str = "",
        type: str = "",
        source_uri: str = "",
        disabled: bool = False,
        public_key: str | None = None,
        created_at: datetime | None = None,
    ) -> None:
        self._client = client
        self._org = org
        self.id = id
        self.name = name
        self.type = type
        self.source_uri = source_uri
        self.disabled = disabled
        self.public_key = public_key
        self.created_at = created_at

    @classmethod
    def from_dict(cls, client: tilde.core.Client, org: str, data: Mapping[str, Any]) -> Connector:
        """Build a connector from a ``ConnectorInfo`` response object.

        Args:
            client: The client that fetched it.
            org: The organization's name.
            data: The decoded JSON object.

        Returns:
            The connector.

        """
        return cls(
            client,
            org,
            id=_text(data, "id"),
            name=_text(data, "name"),
            type=_text(data, "type"),
            source_uri=_text(data, "source_uri"),
            disabled=bool(data.get("disabled")),
            public_key=_optional_text(data, "public_key"),
            created_at=parse_timestamp(data.get("created_at")),
        )

    def delete(self) -> None:
        """Delete this connector."""
        Connectors(self._client, self._org).delete(self.id)

    def __repr__(self) -> str:
        return f"Connector({self.name!r}, type={self.type!r})"


class Connectors:
    """The connectors of an organization.

    Args:
        client: The client to send requests with.
        org: The organization's name.

    """

    def __init__(self, client: tilde.core.Client, org: str) -> None:
        self._client = client
        self._org = org

    @property
    def _path(self) -> str:
        return org_path(self._org, "connectors")

    def _build(self, data: Mapping[str, Any]) -> Connector:
        return Connector.from_dict(self._client, self._org, data)

    def list(self, *, amount: int | None = None) -> PaginatedIterator[Connector]:
        """List the connectors (one request, on first iteration).

        Args:
            amount: Stop after this many connectors.

        Returns:
            A lazy, single-pass iterator of `Connector`.

        """
        return self._client._list_once(self._path, self._build, amount=amount)

    def get(self, connector_id: str) -> Connector:
        """Fetch one connector.

        Args:
            connector_id: The connector's id.

        Returns:
            The connector.

        """
        return fetch(self._client, _item(self._path, connector_id), self._build)

    def create(self, name: str, type: str, source_uri: str, config: Mapping[str, Any]) -> Connector:
        """Create a connector.

        Args:
            name: Its name.
            type: ``s3``, ``gcs``, ``git`` or ``google_drive``.
            source_uri: Where it reads from, e.g. ``s3://bucket/prefix/``.
            config: Type-specific settings and credentials (for S3: ``access_key_id``,
                ``secret_access_key``, ``region``), sent as given.

        Returns:
            The new connector.

        """
        body = {"name": name, "type": type, "source_uri": source_uri, "config": dict(config)}
        return post(self._client, self._path, body, self._build)

    def delete(self, connector_id: str) -> None:
        """Delete a connector.

        Args:
            connector_id: The connector's id.

        """
        self._client._delete(_item(self._path, connector_id))

    def __repr__(self) -> str:
        return f"Connectors(org={self._org!r})"


class RepositoryConnectors:
    """The connectors attached to one repository.

    Args:
        client: The client to send requests with.
        org: The organization's name.
        repo: The repository's name.

    """

    def __init__(self, client: tilde.core.Client, org: str, repo: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo

    @property
    def _path(self) -> str:
        return org_path(self._org, f"repositories/{segment(self._repo)}/connectors")

    def list(self, *, amount: int | None = None) -> PaginatedIterator[Connector]:
        """List the attached connectors (one request, on first iteration).

        Args:
            amount: Stop after this many connectors.

        Returns:
            A lazy, single-pass iterator of `Connector`.

        """
        return self._client._list_once(
            self._path, partial(Connector.from_dict, self._client, self._org), amount=amount
        )

    def attach(self, connector_id: str) -> None:
        """Let this repository import through a connector of its organization.

        Args:
            connector_id: The connector's id.

        """
        self._client._post_json(self._path, json={"connector_id": connector_id})

    def detach(self, connector_id: str) -> None:
        """Stop this repository from importing through a connector.

        Args:
            connector_id: The connector's id.

        """
        self._client._delete(_item(self._path, connector_id))

    def __repr__(self) -> str:
        return f"RepositoryConnectors({self._org}/{self._repo})"
