"""Repositories: the handle every data operation starts from, and the per-organization collection."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, cast

from tilde.core.names import check_org, check_repository, check_uuid, segment
from tilde.data._timestamps import parse_timestamp
from tilde.data.commits import Commits, _int_or_none
from tilde.data.sessions import Session

# PEP 696 TypeVar defaults: in typing from 3.13, from typing_extensions before. Only type checkers read a
# default, so before 3.13 the running code makes a plain TypeVar: typing_extensions stays out of the import.
if sys.version_info >= (3, 13) or not TYPE_CHECKING:
    from typing import TypeVar
else:
    from typing_extensions import TypeVar

if TYPE_CHECKING:
    from tilde.core import Client as CoreClient
    from tilde.core.pagination import PaginatedIterator
    from tilde.data.client import Client as DataClient

__all__ = ["Repositories", "Repository", "RepositoryT"]

# Any repository class, for the classmethods that return an instance of the class they are called on.
_Handle = TypeVar("_Handle", bound="Repository")

_FIELDS = (
    "id",
    "organization_id",
    "description",
    "visibility",
    "session_max_duration_days",
    "retention_days",
    "created_by_type",
    "created_by",
    "created_at",
)


class Repository:
    """A repository handle. ``org`` and ``name`` need no request; the other attributes load lazily.

    A handle is *loaded* when built from a server response or constructed with an ``id``; otherwise the first
    access to any other attribute fetches ``GET R``.

    Args:
        client: The client.
        org: Organization name.
        name: Repository name.
        **fields: Known attributes (``id``, ``description``, ``visibility``, ``session_max_duration_days``,
            ``retention_days``, ``organization_id``, ``created_by_type``, ``created_by``, ``created_at``).

    """

    def __init__(self, client: CoreClient, org: str, name: str, **fields: Any) -> None:
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise TypeError(f"unknown repository fields: {', '.join(sorted(unknown))}")
        self._client = client
        # Names from the caller are checked where they come in (Client.repository, Repositories.get, ...);
        # what the server sends is taken as it is.
        self.org = org
        self.name = name
        self._path = f"/organizations/{segment(org)}/repositories/{segment(name)}"
        self._id = ""
        self._organization_id = ""
        self._description = ""
        self._visibility = ""
        self._session_max_duration_days: int | None = None
        self._retention_days: int | None = None
        self._created_by_type = ""
        self._created_by = ""
        self._created_at: datetime | None = None
        self._loaded = False
        if fields:
            self._apply(fields, loaded=bool(fields.get("id")))

    @classmethod
    def from_dict(cls: type[_Handle], client: CoreClient, org: str, data: Mapping[str, Any]) -> _Handle:
        """Build a loaded handle from a ``Repository`` response object (subclasses keep their type).

        Args:
            client: The client that fetched it.
            org: The organization's name.
            data: The decoded JSON object.

        Returns:
            The repository handle, an instance of the class it is called on.

        """
        repository = cls(client, org, str(data.get("name") or ""))
        repository._apply(data, loaded=True)
        return repository

    # The name earlier releases used; kept so code (and subclasses) calling it keep working.
    _from_dict = from_dict

    def _apply(self, data: Mapping[str, Any], *, loaded: bool) -> None:
        self._id = str(data.get("id") or "")
        self._organization_id = str(data.get("organization_id") or "")
        self._description = str(data.get("description") or "")
        self._visibility = str(data.get("visibility") or "")
        self._session_max_duration_days = _int_or_none(data.get("session_max_duration_days"))
        self._retention_days = _int_or_none(data.get("retention_days"))
        self._created_by_type = str(data.get("created_by_type") or "")
        self._created_by = str(data.get("created_by") or "")
        self._created_at = parse_timestamp(data.get("created_at"))
        self._loaded = loaded

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.refresh()

    def __repr__(self) -> str:
        return f"Repository({self.org}/{self.name})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Repository):
            return NotImplemented
        return (self.org, self.name) == (other.org, other.name)

    def __hash__(self) -> int:
        return hash((self.org, self.name))

    @property
    def id(self) -> str:
        """The repository id."""
        self._ensure_loaded()
        return self._id

    @property
    def organization_id(self) -> str:
        """The owning organization's id."""
        self._ensure_loaded()
        return self._organization_id

    @property
    def description(self) -> str:
        """Free-text description."""
        self._ensure_loaded()
        return self._description

    @property
    def visibility(self) -> str:
        """``private`` or ``public``."""
        self._ensure_loaded()
        return self._visibility

    @property
    def session_max_duration_days(self) -> int | None:
        """How long a session may stay open."""
        self._ensure_loaded()
        return self._session_max_duration_days

    @property
    def retention_days(self) -> int | None:
        """How long old commits stay readable."""
        self._ensure_loaded()
        return self._retention_days

    @property
    def created_by_type(self) -> str:
        """``user``, ``role`` or ``agent``."""
        self._ensure_loaded()
        return self._created_by_type

    @property
    def created_by(self) -> str:
        """The creator's id."""
        self._ensure_loaded()
        return self._created_by

    @property
    def created_at(self) -> datetime | None:
        """When the repository was created."""
        self._ensure_loaded()
        return self._created_at

    @property
    def commits(self) -> Commits:
        """The repository's commit history."""
        return Commits(self._client, self.org, self.name)

    def refresh(self) -> Repository:
        """Re-read the repository.

        Returns:
            This handle, updated.

        Raises:
            NotFoundError: The repository does not exist.

        """
        data = self._client._get_json(self._path)
        self._apply(data, loaded=True)
        if data.get("name"):
            self.name = str(data["name"])
        return self

    def update(
        self,
        *,
        description: str | None = None,
        visibility: str | None = None,
        session_max_duration_days: int | None = None,
        retention_days: int | None = None,
    ) -> Repository:
        """Change settings; only the arguments given are sent.

        Args:
            description: New description.
            visibility: ``private`` or ``public``.
            session_max_duration_days: New session limit.
            retention_days: New retention window.

        Returns:
            This handle, updated from the response.

        """
        body = {
            key: value
            for key, value in (
                ("description", description),
                ("visibility", visibility),
                ("session_max_duration_days", session_max_duration_days),
                ("retention_days", retention_days),
            )
            if value is not None
        }
        data = self._client._put_json(self._path, json=body)
        if data:
            self._apply(data, loaded=True)
        else:
            self._loaded = False
        return self

    def delete(self) -> None:
        """Delete the repository (a soft delete on the server)."""
        self._client._delete(self._path)

    def session(self) -> Session:
        """Open a new session.

        Returns:
            The session; use it as a context manager to roll back unless committed.

        Raises:
            ForbiddenError: The caller may not write to this repository.

        """
        data = self._client._post_json(f"{self._path}/sessions") or {}
        return Session(self._client, self.org, self.name, str(data["session_id"]))

    def attach(self, session_id: str) -> Session:
        """Resume an existing session (from another thread, process or machine); makes no request.

        Args:
            session_id: The session's id.

        Returns:
            A handle on that session.

        """
        check_uuid(session_id, "session id")
        return Session(self._client, self.org, self.name, session_id)


#: The repository class a client, an organization or a `Repositories` collection hands out: `Repository` in
#: a data-only install, the composed ``tilde.Repository`` through the full SDK's client. Covariant, so a
#: ``Repositories[tilde.Repository]`` is usable wherever a ``Repositories[Repository]`` is expected; it
#: defaults to `Repository` so ``tilde.data.Client()`` needs no type argument.
if TYPE_CHECKING or sys.version_info >= (3, 13):
    RepositoryT = TypeVar("RepositoryT", bound=Repository, covariant=True, default=Repository)
else:
    RepositoryT = TypeVar("RepositoryT", bound=Repository, covariant=True)


class Repositories(Generic[RepositoryT]):
    """The repositories of one organization.

    Handles are built with ``client.repository_class`` when the client has one, so a facade client that adds
    compute or admin features gets its richer repository type from here too. The type parameter is that class
    (``Repositories[tilde.Repository]`` from ``tilde.Client``), so type checkers see what the handles can do.

    Args:
        client: The client; its type argument is the collection's.
        org: Organization name.

    """

    def __init__(self, client: DataClient[RepositoryT], org: str) -> None:
        self._client = client
        self._org = check_org(org)
        self._path = f"/organizations/{segment(org)}/repositories"

    def __repr__(self) -> str:
        return f"Repositories(org={self._org!r})"

    @property
    def _repository_class(self) -> type[RepositoryT]:
        cls = getattr(self._client, "repository_class", Repository)
        if not (isinstance(cls, type) and issubclass(cls, Repository)):
            cls = Repository
        # The client's repository_class is what its type argument promises; the cast states that for mypy.
        return cast("type[RepositoryT]", cls)

    def list(
        self, *, after: str | None = None, amount: int | None = None, page_size: int | None = None
    ) -> PaginatedIterator[RepositoryT]:
        """List the organization's repositories.

        Args:
            after: Cursor from a previous page.
            amount: Stop after this many repositories.
            page_size: Repositories per request.

        Returns:
            A lazy iterator of loaded handles.

        """
        cls = self._repository_class
        return self._client._paginate(
            self._path,
            lambda data: cls.from_dict(self._client, self._org, data),
            amount=amount,
            page_size=page_size,
            after=after,
        )

    def get(self, name: str) -> RepositoryT:
        """Return a lazy handle on one repository (no request).

        Args:
            name: Repository name.

        Returns:
            The handle.

        """
        return self._repository_class(self._client, self._org, check_repository(name))

    def create(
        self,
        name: str,
        *,
        description: str = "",
        visibility: str = "private",
        session_max_duration_days: int | None = None,
        retention_days: int | None = None,
    ) -> RepositoryT:
        """Create a repository.

        Args:
            name: Repository name.
            description: Sent only when non-empty.
            visibility: ``private`` (default) or ``public``.
            session_max_duration_days: Session limit.
            retention_days: Retention window.

        Returns:
            The loaded handle.

        Raises:
            ConflictError: The name is taken.

        """
        body: dict[str, Any] = {"name": check_repository(name), "visibility": visibility}
        if description:
            body["description"] = description
        if session_max_duration_days is not None:
            body["session_max_duration_days"] = session_max_duration_days
        if retention_days is not None:
            body["retention_days"] = retention_days
        data = self._client._post_json(self._path, json=body) or {}
        repository = self._repository_class.from_dict(self._client, self._org, data)
        if not repository.name:
            repository.name = name
            repository._path = f"{self._path}/{segment(name)}"
        return repository

    def delete(self, name: str) -> None:
        """Delete a repository.

        Args:
            name: Repository name.

        """
        self._client._delete(f"{self._path}/{segment(check_repository(name))}")
