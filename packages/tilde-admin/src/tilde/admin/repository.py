"""What the admin distribution adds to a repository handle, and a ready handle for admin-only installs."""

from __future__ import annotations

import tilde.data

__all__ = ["AdminRepositoryMixin", "Repository"]


class AdminRepositoryMixin:
    """Repository-scoped admin collections, mixed into `tilde.data.Repository`.

    Nothing is provided yet. The next admin release adds, against the wire contract's repository-scoped admin
    endpoints: ``secrets`` (values injected into sandboxes as environment variables), ``connectors`` (attach
    and detach organization connectors) and ``imports`` (import jobs from a connector or another repository).
    The mixin already sits in the facade's `tilde.Repository` so those properties appear there without any
    change to the composition.
    """


class Repository(AdminRepositoryMixin, tilde.data.Repository):
    """A repository handle with the admin additions, for installs without tilde-compute."""
