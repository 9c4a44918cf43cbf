"""Commits: the repository's history, diffs and reverts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tilde.core.names import check_id, segment
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import ListingEntry
from tilde.data.objects import ReadOnlyObjects

if TYPE_CHECKING:
    from tilde.core import Client as CoreClient
    from tilde.core.pagination import PaginatedIterator

__all__ = ["Commit", "Commits"]


class Commit:
    """One commit; handles built from an id alone load (``GET R/commits/{id}``) on first attribute access.

    Args:
        client: The client.
        org: Organization name.
        repo: Repository name.
        id: The commit id.
        committer: Who committed (a loaded handle has this or ``message``).
        committer_type: ``user``, ``role`` or ``agent``.
        committer_id: The committer's id.
        message: The commit message.
        meta_range_id: Storage tree id, when the server reports it.
        creation_date: When the commit was made.
        parents: Parent commit ids (at most one on a linear history).
        metadata: User metadata.
        object_count: Objects in the commit, when reported.
        total_size: Total bytes, when reported.
        is_stale: Older than the retention window (objects no longer readable).

    """

    def __init__(
        self,
        client: CoreClient,
        org: str,
        repo: str,
        *,
        id: str = "",
        committer: str = "",
        committer_type: str = "",
        committer_id: str = "",
        message: str = "",
        meta_range_id: str = "",
        creation_date: datetime | None = None,
        parents: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        object_count: int | None = None,
        total_size: int | None = None,
        is_stale: bool = False,
    ) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self._path = f"/organizations/{org}/repositories/{repo}"
        self.id = id
        self._committer = committer
        self._committer_type = committer_type
        self._committer_id = committer_id
        self._message = message
        self._meta_range_id = meta_range_id
        self._creation_date = creation_date
        self._parents = list(parents or [])
        self._metadata = dict(metadata or {})
        self._object_count = object_count
        self._total_size = total_size
        self._is_stale = is_stale
        self._loaded = bool(committer or message)

    @classmethod
    def _from_dict(cls, client: CoreClient, org: str, repo: str, data: Mapping[str, Any]) -> Commit:
        commit = cls(client, org, repo, id=str(data.get("id") or ""))
        commit._apply(data)
        return commit

    @classmethod
    def from_dict(cls, client: CoreClient, org: str, repo: str, data: Mapping[str, Any]) -> Commit:
        """Build a loaded commit from a ``CommitLog`` response object.

        Args:
            client: The client that fetched it.
            org: The organization's name.
            repo: The repository's name.
            data: The decoded JSON object.

        Returns:
            The commit.

        """
        return cls._from_dict(client, org, repo, data)

    def _apply(self, data: Mapping[str, Any]) -> None:
        self.id = str(data.get("id") or self.id)
        self._committer = str(data.get("committer") or "")
        self._committer_type = str(data.get("committer_type") or "")
        self._committer_id = str(data.get("committer_id") or "")
        self._message = str(data.get("message") or "")
        self._meta_range_id = str(data.get("meta_range_id") or "")
        self._creation_date = parse_timestamp(data.get("creation_date"))
        parents = data.get("parents")
        self._parents = [str(parent) for parent in parents] if isinstance(parents, list) else []
        metadata = data.get("metadata")
        self._metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
        self._object_count = _int_or_none(data.get("object_count"))
        self._total_size = _int_or_none(data.get("total_size"))
        self._is_stale = bool(data.get("is_stale", False))
        self._loaded = True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.refresh()

    def refresh(self) -> Commit:
        """Re-read the commit from the server.

        Returns:
            This commit, updated.

        """
        self._apply(self._client._get_json(f"{self._path}/commits/{segment(self.id)}"))
        return self

    def __repr__(self) -> str:
        return f"Commit(id={self.id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Commit):
            return NotImplemented
        return (self._org, self._repo, self.id) == (other._org, other._repo, other.id)

    def __hash__(self) -> int:
        return hash((self._org, self._repo, self.id))

    @property
    def committer(self) -> str:
        """Who committed."""
        self._ensure_loaded()
        return self._committer

    @property
    def committer_type(self) -> str:
        """``user``, ``role`` or ``agent``."""
        self._ensure_loaded()
        return self._committer_type

    @property
    def committer_id(self) -> str:
        """The committer's id."""
        self._ensure_loaded()
        return self._committer_id

    @property
    def message(self) -> str:
        """The commit message."""
        self._ensure_loaded()
        return self._message

    @property
    def meta_range_id(self) -> str:
        """Storage tree id (empty when the server does not report it)."""
        self._ensure_loaded()
        return self._meta_range_id

    @property
    def creation_date(self) -> datetime | None:
        """When the commit was made."""
        self._ensure_loaded()
        return self._creation_date

    @property
    def parents(self) -> list[str]:
        """Parent commit ids (a copy)."""
        self._ensure_loaded()
        return list(self._parents)

    @property
    def metadata(self) -> dict[str, Any]:
        """User metadata (a copy)."""
        self._ensure_loaded()
        return dict(self._metadata)

    @property
    def object_count(self) -> int | None:
        """Objects in the commit, when reported."""
        self._ensure_loaded()
        return self._object_count

    @property
    def total_size(self) -> int | None:
        """Total bytes in the commit, when reported."""
        self._ensure_loaded()
        return self._total_size

    @property
    def is_stale(self) -> bool:
        """Whether the commit is older than the retention window."""
        self._ensure_loaded()
        return self._is_stale

    @property
    def objects(self) -> ReadOnlyObjects:
        """The repository's objects as of this commit (requests carry ``ref=<commit id>``)."""
        return ReadOnlyObjects(self._client, self._org, self._repo, ref=self.id or None)

    def diff(
        self,
        *,
        prefix: str | None = None,
        after: str | None = None,
        amount: int | None = None,
        page_size: int | None = None,
        delimiter: str | None = None,
    ) -> PaginatedIterator[ListingEntry]:
        """List what this commit changed relative to its first parent (everything, for the root commit).

        Args:
            prefix: Only paths starting with this.
            after: Start strictly after this path.
            amount: Stop after this many entries.
            page_size: Entries per request.
            delimiter: Collapse paths up to the next delimiter into ``"prefix"`` entries.

        Returns:
            Entries whose ``status`` is ``added``, ``modified`` or ``removed``.

        """
        self._ensure_loaded()
        params: dict[str, Any] = {"right": self.id}
        if self._parents:
            params["left"] = self._parents[0]
        if prefix:
            params["prefix"] = prefix
        if delimiter:
            params["delimiter"] = delimiter
        return self._client._paginate(
            f"{self._path}/diff",
            ListingEntry.from_dict,
            params=params,
            amount=amount,
            page_size=page_size,
            after=after,
        )

    def revert(self, *, message: str | None = None, metadata: dict[str, Any] | None = None) -> Commit:
        """Create a new commit undoing this one.

        Args:
            message: The new commit's message (server default: ``Revert "<message>"``).
            metadata: The new commit's metadata.

        Returns:
            A lazy handle on the new commit.

        Raises:
            BadRequestError: The commit has no single parent.
            ConflictError: The revert conflicts with later changes.

        """
        body: dict[str, Any] = {}
        if message is not None:
            body["message"] = message
        if metadata is not None:
            body["metadata"] = metadata
        data = self._client._post_json(f"{self._path}/commits/{segment(self.id)}/revert", json=body) or {}
        return Commit(self._client, self._org, self._repo, id=str(data["commit_id"]))


class Commits:
    """A repository's commit history.

    Args:
        client: The client.
        org: Organization name.
        repo: Repository name.

    """

    def __init__(self, client: CoreClient, org: str, repo: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self._path = f"/organizations/{org}/repositories/{repo}"

    def __repr__(self) -> str:
        return f"Commits({self._org}/{self._repo})"

    def list(
        self,
        *,
        ref: str | None = None,
        after: str | None = None,
        amount: int | None = None,
        page_size: int | None = None,
    ) -> PaginatedIterator[Commit]:
        """List commits, newest first.

        Args:
            ref: Start from this commit instead of the latest.
            after: Cursor from a previous page.
            amount: Stop after this many commits.
            page_size: Commits per request.

        Returns:
            A lazy iterator of loaded `Commit` handles.

        """
        params: dict[str, Any] = {}
        if ref:
            params["ref"] = ref
        return self._client._paginate(
            f"{self._path}/log",
            lambda data: Commit._from_dict(self._client, self._org, self._repo, data),
            params=params,
            amount=amount,
            page_size=page_size,
            after=after,
        )

    def get(self, commit_id: str) -> Commit:
        """Fetch one commit.

        Args:
            commit_id: The commit id.

        Returns:
            The loaded commit.

        Raises:
            NotFoundError: No such commit.

        """
        data = self._client._get_json(f"{self._path}/commits/{segment(check_id(commit_id, 'commit id'))}")
        return Commit._from_dict(self._client, self._org, self._repo, data)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return None
