"""What every tool shares: the API client, exposed repositories, open sessions and shells, error mapping."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mcp.server.mcpserver.exceptions import ToolError

if TYPE_CHECKING:
    from tilde._composed import Client, Repository
    from tilde.compute import Shell
    from tilde.data import Session

__all__ = ["ToolContext", "api_errors", "describe"]


def describe(exc: BaseException) -> str:
    """Turn an SDK or network error into one line an agent can act on (the API's own message first).

    Args:
        exc: The exception a tool raised.

    Returns:
        The message.

    """
    from tilde.core.errors import APIError, TildeError, TransportError

    if isinstance(exc, APIError):
        detail = exc.message or exc.response_text[:200] or "no details"
        return f"{detail} (HTTP {exc.status_code})"
    if isinstance(exc, TransportError):
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        return f"cannot reach the Tilde server ({reason})"
    if isinstance(exc, TildeError | ValueError | OSError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


@contextmanager
def api_errors() -> Iterator[None]:
    """Re-raise any failure inside the block as a `ToolError` (an ``is_error`` result, never a crash).

    Yields:
        Nothing.

    Raises:
        ToolError: The block failed.

    """
    try:
        yield
    except ToolError:
        raise
    except Exception as exc:
        raise ToolError(describe(exc)) from exc


@dataclass
class ToolContext:
    """The server's state, shared by all tools.

    Attributes:
        client: The API client (credentials from the normal chain).
        repositories: ``ORG/REPO`` names the server exposes; empty means every repository the key can see.
        read_only: Only reading tools are offered.

    """

    client: Client
    repositories: tuple[str, ...] = ()
    read_only: bool = False
    _sessions: dict[str, Session] = field(default_factory=dict, repr=False)
    _shells: dict[str, Shell] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def repository(self, name: str) -> Repository:
        """Return a handle on an exposed repository.

        Args:
            name: ``ORG/REPO``.

        Returns:
            The handle (no request is made).

        Raises:
            ToolError: The name is malformed or the repository is not exposed by this server.

        """
        from tilde.core.names import check_org, check_repository
        from tilde.data.urls import parse_repo_path

        try:
            org, repo = parse_repo_path(name)
            check_org(org)
            check_repository(repo)
        except ValueError as exc:
            raise ToolError(f"bad repository {name!r}: {exc}") from exc
        canonical = f"{org}/{repo}"
        if self.repositories and canonical not in self.repositories:
            exposed = ", ".join(self.repositories)
            raise ToolError(f"repository {canonical} is not exposed by this server (it offers: {exposed})")
        return self.client.repository(canonical)

    def add_session(self, session: Session) -> None:
        """Remember a session opened through this server.

        Args:
            session: The open session.

        """
        with self._lock:
            self._sessions[session.id] = session

    def session(self, session_id: str) -> Session:
        """Return a session opened through this server.

        Args:
            session_id: The id ``open_session`` returned.

        Returns:
            The session.

        Raises:
            ToolError: No such open session.

        """
        with self._lock:
            found = self._sessions.get(session_id)
        if found is None:
            raise ToolError(f"no open session {session_id!r} (open one with open_session)")
        return found

    def forget_session(self, session_id: str) -> None:
        """Drop a committed or rolled-back session.

        Args:
            session_id: Its id.

        """
        with self._lock:
            self._sessions.pop(session_id, None)

    def add_shell(self, shell: Shell) -> None:
        """Remember a shell started through this server.

        Args:
            shell: The running shell.

        """
        with self._lock:
            self._shells[shell.sandbox_id] = shell

    def shell(self, sandbox_id: str) -> Shell:
        """Return a shell started through this server.

        Args:
            sandbox_id: The id ``shell_start`` returned.

        Returns:
            The shell.

        Raises:
            ToolError: No such running shell.

        """
        with self._lock:
            found = self._shells.get(sandbox_id)
        if found is None:
            raise ToolError(f"no running shell {sandbox_id!r} (start one with shell_start)")
        return found

    def close(self) -> None:
        """Cancel the shells still running (their changes are discarded); sessions stay open on the server."""
        from tilde.core.errors import TildeError

        with self._lock:
            shells, self._shells = list(self._shells.values()), {}
        for sh in shells:
            try:
                sh.cancel()
            except TildeError:
                pass  # already ended (timed out or cancelled elsewhere): nothing is left to discard

    def forget_shell(self, sandbox_id: str) -> None:
        """Drop a finished or cancelled shell.

        Args:
            sandbox_id: Its sandbox id.

        """
        with self._lock:
            self._shells.pop(sandbox_id, None)
