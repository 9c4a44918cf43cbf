"""Imports: server-side jobs that copy objects into a repository, from a connector or another repository.

An import runs asynchronously and ends in one commit. `Imports.create_from_connector` and
`Imports.create_from_repository` start a job and return its current state; `ImportJob.wait` follows it to
its end (or call `ImportJob.refresh` yourself until ``status`` is ``completed``, ``failed`` or ``canceled``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from tilde.admin._collection import fetch, item_path, org_path
from tilde.core.names import check_uuid, segment
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _optional_int, _text

if TYPE_CHECKING:
    import tilde.core

__all__ = ["ImportJob", "Imports"]

_TEXT_FIELDS = (
    "id",
    "status",
    "repository_id",
    "connector_id",
    "source_prefix",
    "destination_path",
    "commit_message",
    "commit_id",
    "error",
    "source_repository_id",
    "source_organization",
    "source_repository",
    "created_by_type",
    "created_by",
)

# "cancelled" too: the contract spells it "canceled", and a job is just as finished either way.
_TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled", "cancelled"})


class ImportJob:
    """An import job and its progress.

    Args:
        client: The client to send requests with.
        org: The destination repository's organization.
        repo: The destination repository's name.
        id: The job's id.
        status: ``pending``, ``running``, ``completed``, ``failed`` or ``canceled``.
        repository_id: The destination repository's id.
        connector_id: The connector imported through (connector imports).
        source_prefix: Only objects under this prefix of the source are imported.
        destination_path: Where the objects land in the repository.
        commit_message: The message of the import's commit.
        objects_imported: How many objects were imported, once known.
        commit_id: The import's commit, once completed.
        error: Why it failed, if it did.
        source_repository_id: The source repository's id (repository imports).
        source_organization: The source repository's organization (repository imports).
        source_repository: The source repository's name (repository imports).
        created_by_type: ``user``, ``role`` or ``agent``.
        created_by: The id of the principal that started it.
        created_at: When it started.
        updated_at: When its state last changed.

    Attributes:
        id: The job's id.
        status: ``pending``, ``running``, ``completed``, ``failed`` or ``canceled``.
        repository_id: The destination repository's id.
        connector_id: The connector imported through (connector imports).
        source_prefix: Only objects under this prefix of the source are imported.
        destination_path: Where the objects land in the repository.
        commit_message: The message of the import's commit.
        objects_imported: How many objects were imported, once known.
        commit_id: The import's commit, once completed.
        error: Why it failed, if it did.
        source_repository_id: The source repository's id (repository imports).
        source_organization: The source repository's organization (repository imports).
        source_repository: The source repository's name (repository imports).
        created_by_type: ``user``, ``role`` or ``agent``.
        created_by: The id of the principal that started it.
        created_at: When it started.
        updated_at: When its state last changed.

    """

    def __init__(
        self,
        client: tilde.core.Client,
        org: str,
        repo: str,
        *,
        id: str = "",
        status: str = "",
        repository_id: str = "",
        connector_id: str = "",
        source_prefix: str = "",
        destination_path: str = "",
        commit_message: str = "",
        objects_imported: int | None = None,
        commit_id: str = "",
        error: str = "",
        source_repository_id: str = "",
        source_organization: str = "",
        source_repository: str = "",
        created_by_type: str = "",
        created_by: str = "",
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self.id = id
        self.status = status
        self.repository_id = repository_id
        self.connector_id = connector_id
        self.source_prefix = source_prefix
        self.destination_path = destination_path
        self.commit_message = commit_message
        self.objects_imported = objects_imported
        self.commit_id = commit_id
        self.error = error
        self.source_repository_id = source_repository_id
        self.source_organization = source_organization
        self.source_repository = source_repository
        self.created_by_type = created_by_type
        self.created_by = created_by
        self.created_at = created_at
        self.updated_at = updated_at

    @classmethod
    def from_dict(cls, client: tilde.core.Client, org: str, repo: str, data: Mapping[str, Any]) -> ImportJob:
        """Build from an ``ImportJob`` response object.

        Args:
            client: The client that fetched it.
            org: The destination repository's organization.
            repo: The destination repository's name.
            data: The decoded JSON object.

        Returns:
            The job.

        """
        job = cls(client, org, repo)
        job._apply(data)
        return job

    def _apply(self, data: Mapping[str, Any]) -> None:
        for name in _TEXT_FIELDS:
            setattr(self, name, _text(data, name))
        self.objects_imported = _optional_int(data, "objects_imported")
        self.created_at = parse_timestamp(data.get("created_at"))
        self.updated_at = parse_timestamp(data.get("updated_at"))

    @property
    def finished(self) -> bool:
        """Whether the job has ended (``completed``, ``failed`` or ``canceled``), as of the last read."""
        return self.status in _TERMINAL_STATUSES

    def refresh(self) -> ImportJob:
        """Re-read the job's state into this object.

        Returns:
            This job, updated.

        """
        path = f"/organizations/{self._org}/repositories/{self._repo}/import/{self.id}"
        self._apply(self._client._get_json(path))
        return self

    def wait(self, *, timeout: float | None = None, poll_interval: float = 1.0) -> ImportJob:
        """Follow the job until it ends, re-reading it every ``poll_interval`` seconds.

        A failed or canceled job is returned like a completed one: check ``status`` (and ``error``).

        Args:
            timeout: Give up after this many seconds (``None``: wait as long as the job runs).
            poll_interval: Seconds between two reads of the job.

        Returns:
            This job, updated to its final state.

        Raises:
            TimeoutError: The job was still running when ``timeout`` ran out (this object then holds the last
                state read; the job goes on on the server).
            ValueError: ``poll_interval`` is not positive or ``timeout`` is negative.

        """
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must not be negative, got {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            if deadline is None:
                time.sleep(poll_interval)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"import job {self.id} is still {self.status or 'unfinished'} after {timeout} s"
                    )
                time.sleep(min(poll_interval, remaining))
            self.refresh()
        return self

    def __repr__(self) -> str:
        return f"ImportJob(id={self.id!r}, status={self.status!r})"


class Imports:
    """The import jobs of one repository.

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
        return org_path(self._org, f"repositories/{segment(self._repo)}/import")

    def get(self, job_id: str) -> ImportJob:
        """Fetch an import job.

        Args:
            job_id: The job's id.

        Returns:
            The job.

        """
        return self._fetch(check_uuid(job_id, "import job id"))

    def _fetch(self, job_id: str) -> ImportJob:
        # Ids the server just returned are not checked: only what a caller passes is.
        build = partial(ImportJob.from_dict, self._client, self._org, self._repo)
        return fetch(self._client, item_path(self._path, job_id), build)

    def create_from_connector(
        self,
        connector_id: str,
        destination_path: str,
        *,
        source_prefix: str | None = None,
        commit_message: str | None = None,
    ) -> ImportJob:
        """Start importing from a connector attached to this repository.

        Args:
            connector_id: The connector's id.
            destination_path: Where the objects land in the repository (e.g. ``"imported/"``).
            source_prefix: Import only objects under this prefix of the source.
            commit_message: The message of the import's commit.

        Returns:
            The new job, as the server reports it right after starting it.

        Raises:
            ConflictError: A conflicting import is already running.

        """
        body = {"connector_id": connector_id, "destination_path": destination_path}
        return self._start(body, source_prefix=source_prefix, commit_message=commit_message)

    def create_from_repository(
        self,
        repo_path: str,
        destination_path: str,
        *,
        source_prefix: str | None = None,
        commit_message: str | None = None,
    ) -> ImportJob:
        """Start copying objects from another repository into this one.

        Args:
            repo_path: The source, ``"organization/repository"``.
            destination_path: Where the objects land in this repository.
            source_prefix: Import only objects under this prefix of the source.
            commit_message: The message of the import's commit.

        Returns:
            The new job, as the server reports it right after starting it.

        Raises:
            ValueError: ``repo_path`` is not ``"organization/repository"`` (no request is made).

        """
        org, _, name = repo_path.partition("/")
        if not org or not name or "/" in name:
            raise ValueError(f"expected a repository path 'org/repo', got {repo_path!r}")
        body = {"source_organization": org, "source_repository": name, "destination_path": destination_path}
        return self._start(body, source_prefix=source_prefix, commit_message=commit_message)

    def _start(
        self, body: dict[str, Any], *, source_prefix: str | None, commit_message: str | None
    ) -> ImportJob:
        if source_prefix is not None:
            body["source_prefix"] = source_prefix
        if commit_message is not None:
            body["commit_message"] = commit_message
        started = self._client._post_json(self._path, json=body) or {}
        # The start call answers only the job id; the job itself is one GET away.
        return self._fetch(str(started["job_id"]))

    def __repr__(self) -> str:
        return f"Imports({self._org}/{self._repo})"
