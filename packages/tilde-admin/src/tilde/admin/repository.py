"""What the admin distribution adds to a repository handle, and a ready handle for admin-only installs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import tilde.data
from tilde.admin.connectors import RepositoryConnectors
from tilde.admin.imports import Imports
from tilde.admin.secrets import Secrets

if TYPE_CHECKING:
    import tilde.core

__all__ = ["AdminRepositoryMixin", "Repository"]


class _RepositoryHandle(Protocol):
    """What the mixin needs from the repository handle it is mixed into."""

    @property
    def _client(self) -> tilde.core.Client: ...

    @property
    def _path(self) -> str: ...

    @property
    def org(self) -> str: ...

    @property
    def name(self) -> str: ...


class AdminRepositoryMixin:
    """Repository-scoped admin collections, mixed into `tilde.data.Repository`.

    Uses the handle's ``_client``, ``_path``, ``org`` and ``name``; no request until a collection is used.
    """

    @property
    def secrets(self: _RepositoryHandle) -> Secrets:
        """The repository's secrets, injected into its sandboxes as environment variables."""
        return Secrets(self._client, f"{self._path}/secrets")

    @property
    def connectors(self: _RepositoryHandle) -> RepositoryConnectors:
        """The organization connectors attached to this repository."""
        return RepositoryConnectors(self._client, self.org, self.name)

    @property
    def imports(self: _RepositoryHandle) -> Imports:
        """The repository's import jobs."""
        return Imports(self._client, self.org, self.name)


class Repository(AdminRepositoryMixin, tilde.data.Repository):
    """A repository handle with the admin additions, for installs without tilde-compute."""
