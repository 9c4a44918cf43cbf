"""What the admin distribution adds to a client, and a ready client for admin-only installs."""

from __future__ import annotations

from typing import ClassVar, Generic, cast

import tilde.data
from tilde.admin.organizations import Organizations
from tilde.admin.repository import Repository
from tilde.data.repositories import RepositoryT

__all__ = ["AdminClientMixin", "Client"]


class AdminClientMixin(Generic[RepositoryT]):
    """Client-level admin collections, mixed into a `tilde.data.Client` subclass.

    Parameterise it with the same repository class as the client:
    ``class Client(AdminClientMixin[MyRepository], tilde.data.Client[MyRepository])``.
    """

    @property
    def organizations(self) -> Organizations[RepositoryT]:
        """The organizations the caller can see (a new collection object on each access)."""
        # The mixin is only ever combined with a tilde.data.Client of the same type argument; the cast states
        # that for the type checker.
        return Organizations(cast("tilde.data.Client[RepositoryT]", self))


class Client(AdminClientMixin[Repository], tilde.data.Client[Repository]):
    """A data client with organizations, whose repositories carry the admin additions.

    Takes the same arguments as `tilde.data.Client`.
    """

    repository_class: ClassVar[type[tilde.data.Repository]] = Repository
