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
