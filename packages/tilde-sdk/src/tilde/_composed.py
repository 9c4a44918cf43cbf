"""The composed client and repository handle: data, compute and admin in one class each.

Kept out of ``tilde/__init__.py`` so that importing ``tilde`` stays light; ``tilde.Client`` and
``tilde.Repository`` resolve here on first access, and `tilde.client` and `tilde.models` re-export them.
"""

from __future__ import annotations

from typing import ClassVar

import tilde.data
from tilde.admin import AdminClientMixin, AdminRepositoryMixin
from tilde.compute import ComputeRepositoryMixin

__all__ = ["Client", "Repository"]


class Repository(ComputeRepositoryMixin, AdminRepositoryMixin, tilde.data.Repository):
    """A repository handle with everything: objects, sessions and commits, sandboxes, and admin collections.

    Built by `Client.repository` (or `tilde.repository`), `Repositories.get`/``create``/``list`` through a
    `Client`'s organizations; making one with ``repository()`` or ``get()`` sends no request. Use it in
    annotations as ``tilde.Repository``.
    """


class Client(AdminClientMixin[Repository], tilde.data.Client[Repository]):
    """The full Tilde client: repositories with data, compute and admin features, plus organizations.

    Takes the same arguments as `tilde.data.Client` (``endpoint_url``, ``api_key``, ``default_sandbox_image``,
    ``credentials_provider``, ``timeout``, ``max_retries``, ...). Every repository handle it gives out, from
    `repository`, `repositories` or ``organizations.get(...).repositories``, is a `tilde.Repository`. Use it
    as a context manager, or call `close`, to release its connections.

    Example:
        >>> import tilde
        >>> client = tilde.Client(endpoint_url="http://127.0.0.1:8080", api_key="tuk-…")  # doctest: +SKIP
        >>> with client:  # doctest: +SKIP
        ...     repo = client.repository("acme/data")
        ...     print(repo.execute("ls /sandbox").stdout)

    """

    repository_class: ClassVar[type[tilde.data.Repository]] = Repository
