"""What the admin distribution adds to a client, and a ready client for admin-only installs."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

import tilde.data
from tilde.admin.organizations import Organizations
from tilde.admin.repository import Repository

if TYPE_CHECKING:
    import tilde.core

__all__ = ["AdminClientMixin", "Client"]


class AdminClientMixin:
    """Client-level admin collections, mixed into a `tilde.core.Client` subclass."""

    @property
    def organizations(self) -> Organizations:
        """The organizations the caller can see (a new collection object on each access)."""
        # The mixin is only ever combined with a tilde.core.Client; the cast states that for the type checker.
        return Organizations(cast("tilde.core.Client", self))


class Client(AdminClientMixin, tilde.data.Client):
    """A data client with organizations, whose repositories carry the admin additions.

    Takes the same arguments as `tilde.data.Client`.
    """

    repository_class: ClassVar[type[tilde.data.Repository]] = Repository

    def repository(self, repo_path: str) -> Repository:
        """Return a handle on a repository, with the admin additions; sends no request.

        Args:
            repo_path: ``"organization/repository"``.

        Returns:
            The repository handle.

        Raises:
            ValueError: ``repo_path`` is not of the form ``"organization/repository"``.

        """
        # The parent builds it with repository_class; the cast only restates that type for the type checker.
        return cast("Repository", super().repository(repo_path))
