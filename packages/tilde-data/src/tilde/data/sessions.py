"""Sessions: transactions over a repository's objects (CONTRACT §5.1)."""

from __future__ import annotations

import contextlib
import time
import uuid
import warnings
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tilde.core._transport import IDEMPOTENCY_KEY_HEADER, json_object
from tilde.core.errors import NotFoundError, TildeError
from tilde.core.names import segment
from tilde.data.models import CommitResult, EntryRecord
from tilde.data.objects import SessionObjects

if TYPE_CHECKING:
    from tilde.core import Client as CoreClient
    from tilde.core.pagination import PaginatedIterator

__all__ = ["APPROVAL_POLL_INTERVAL", "Session"]

#: Seconds between checks while a blocking commit waits for a human's approval.
APPROVAL_POLL_INTERVAL = 2.0

_ACCEPTED = 202


class Session:
    """An open session: stage object changes, then commit them atomically or roll them back.

    Used as a context manager, the session is rolled back on exit unless it was committed (an
    approval-required commit counts) or already rolled back; exceptions are never suppressed.

    Args:
        client: The client.
        org: Organization name.
        repo: Repository name.
        session_id: The server's session id.

    """

    def __init__(self, client: CoreClient, org: str, repo: str, session_id: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self._session_id = session_id
        self._repository_path = f"/organizations/{segment(org)}/repositories/{segment(repo)}"
        self._path = f"{self._repository_path}/sessions/{segment(session_id)}"
        self._committed = False
        self._rolled_back = False

    def __repr__(self) -> str:
        return f"Session(id={self._session_id!r})"

    @property
    def id(self) -> str:
        """The session id (pass it to ``Repository.attach`` to resume from elsewhere), like `Sandbox.id`."""
        return self._session_id

    @property
    def session_id(self) -> str:
        """The session id; the same as `id` (the name earlier releases used)."""
        return self._session_id

    @property
    def objects(self) -> SessionObjects:
        """Objects as this session sees them, with write access."""
        return SessionObjects(self._client, self._org, self._repo, self._session_id)

    def uncommitted(
        self,
        *,
        prefix: str | None = None,
        after: str | None = None,
        amount: int | None = None,
        page_size: int | None = None,
    ) -> PaginatedIterator[EntryRecord]:
        """List the changes staged in this session (deletions have no ``entry``).

        Args:
            prefix: Only paths starting with this.
            after: Start strictly after this path.
            amount: Stop after this many entries.
            page_size: Entries per request.

        Returns:
            A lazy iterator of `EntryRecord`.

        """
        params: dict[str, Any] = {"session_id": self._session_id}
        if prefix:
            params["prefix"] = prefix
        return self._client._paginate(
            f"{self._repository_path}/changes",
            EntryRecord.from_dict,
            params=params,
            amount=amount,
            page_size=page_size,
            after=after,
        )

    def commit_result(self, message: str, *, metadata: dict[str, Any] | None = None) -> CommitResult:
        """Commit, reporting whether approval is required instead of waiting for it.

        Args:
            message: The commit message.
            metadata: Commit metadata (sent only when non-empty).

        Returns:
            ``status="committed"`` with the ``commit_id``, or ``status="approval_required"`` with ``web_url``.

        Raises:
            ConflictError: Another commit changed a path this session changed; nothing was applied.

        """
        body: dict[str, Any] = {"message": message}
        if metadata:
            body["metadata"] = metadata
        # One key per commit call: a retry after a lost answer (dropped connection, 502/503) gets the first
        # request's outcome from the server instead of a conflict, and the session is committed once.
        headers = {IDEMPOTENCY_KEY_HEADER: uuid.uuid4().hex}
        response = self._client._request("POST", self._path, json=body, headers=headers)
        data = json_object(response)
        self._committed = True
        if response.status_code == _ACCEPTED:
            web_url = data.get("web_url")
            return CommitResult(status="approval_required", web_url=None if web_url is None else str(web_url))
        commit_id = data.get("commit_id")
        return CommitResult(status="committed", commit_id=None if commit_id is None else str(commit_id))

    def commit(
        self, message: str, *, metadata: dict[str, Any] | None = None, block_for_approval: bool = True
    ) -> str | None:
        """Commit the staged changes.

        When the server parks the changes for human approval, a ``UserWarning`` names the approval page; a
        blocking call then checks every two seconds, without a time limit, until the approval is resolved.

        Args:
            message: The commit message.
            metadata: Commit metadata (sent only when non-empty).
            block_for_approval: Wait for a pending approval to be resolved.

        Returns:
            The new commit id; ``""`` when approval was required and has been resolved (the id is not
            reported); ``None`` when approval is required and ``block_for_approval`` is false.

        Raises:
            ConflictError: Another commit changed a path this session changed; nothing was applied.

        """
        result = self.commit_result(message, metadata=metadata)
        if result.status != "approval_required":
            return result.commit_id or ""
        warnings.warn(
            f"Approval required - review and approve at: {result.web_url}", UserWarning, stacklevel=2
        )
        if not block_for_approval:
            return None
        while True:
            time.sleep(APPROVAL_POLL_INTERVAL)
            try:
                self._client._head(f"{self._path}/approve")
            except NotFoundError:
                return ""

    def rollback(self) -> None:
        """Discard every staged change and close the session."""
        self._client._delete(self._path)
        self._rolled_back = True

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._committed or self._rolled_back:
            return
        if exc_type is None:
            self.rollback()
            return
        # The caller's exception is the one worth seeing; a failed rollback must not replace it.
        with contextlib.suppress(TildeError):
            self.rollback()
