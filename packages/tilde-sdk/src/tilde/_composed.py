"""The composed client and repository handle: data, compute and admin in one class each.

Kept out of ``tilde/__init__.py`` so the top-level namespace shows only the facade's public names, while
`tilde.client` and `tilde.models` re-export these classes under their usual names.
"""

from __future__ import annotations

from typing import ClassVar, cast

import tilde.data
from tilde.admin import AdminClientMixin, AdminRepositoryMixin
from tilde.compute import ComputeRepositoryMixin

__all__ = ["Client", "Repository"]


class Repository(ComputeRepositoryMixin, AdminRepositoryMixin, tilde.data.Repository):
    """A repository handle with everything: objects, sessions and commits, sandboxes, and admin collections.

    Built by `Client.repository` (or `tilde.repository`); making one sends no request.
    """


class Client(AdminClientMixin, tilde.data.Client):
    """The full Tilde client: repositories with data, compute and admin features, plus organizations.

    Takes the same arguments as `tilde.data.Client` (``endpoint_url``, ``api_key``, ``default_sandbox_image``,
    ``credentials_provider``, ...). Use it as a context manager, or call `close`, to release its connections.
    """

    repository_class: ClassVar[type[tilde.data.Repository]] = Repository

    def repository(self, repo_path: str) -> Repository:
        """Return a handle on a repository; sends no request.

        Args:
            repo_path: ``"organization/repository"``.

        Returns:
            The repository handle, with data, compute and admin features.

        Raises:
            ValueError: ``repo_path`` is not of the form ``"organization/repository"``.

        """
        # repository_class is Repository unless a subclass swaps it for a subclass of it; the cast only tells
        # the type checker what the parent's (data-typed) return value really is.
        return cast("Repository", super().repository(repo_path))
