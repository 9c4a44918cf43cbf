"""Sandbox status values (:class:`SandboxStatus`) and log streams (:class:`LogStream`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from tilde.core import Client

TERMINAL_STATES = frozenset({"done", "errored", "failed", "cancelled"})
ACTIVE_STATES = frozenset({"starting", "running"})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class SandboxStatus:
    """A snapshot of a sandbox's lifecycle (``GET S/status``).

    Attributes:
        state: The wire ``status``: starting, running, done, errored, failed or cancelled.
        status_reason: Why the sandbox is in that state, e.g. ``committed``, ``exit_non_zero``, ``timeout``.
        exit_code: The main command's exit status, when known.
        commit_id: The commit a ``done/committed`` sandbox made.
        web_url: Where to approve a ``done/awaiting_approval`` sandbox's changes.
        error_message: What went wrong, for ``failed`` and ``errored`` sandboxes.

    """

    def __init__(
        self,
        state: str = "",
        *,
        status_reason: str = "",
        exit_code: int | None = None,
        commit_id: str | None = None,
        web_url: str | None = None,
        error_message: str | None = None,
        _client: Client | None = None,
        _sandbox_path: str = "",
    ):
        self.state = state
        self.status_reason = status_reason
        self.exit_code = exit_code
        self.commit_id = commit_id
        self.web_url = web_url
        self.error_message = error_message
        self._client = _client
        self._sandbox_path = _sandbox_path

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, client: Client | None = None, sandbox_path: str = ""
    ) -> SandboxStatus:
        """Build a status from its wire form; missing or null fields take their defaults.

        Args:
            data: The SandboxStatus JSON object.
            client: The client used to read the sandbox's logs.
            sandbox_path: The sandbox's API path (``R/sandboxes/{id}``).

        Returns:
            The status.

        """
        exit_code = data.get("exit_code")
        try:
            code = int(exit_code) if exit_code is not None else None
        except (TypeError, ValueError):
            code = None
        return cls(
            _text(data.get("status")),
            status_reason=_text(data.get("status_reason")),
            exit_code=code,
            commit_id=_optional_text(data.get("commit_id")),
            web_url=_optional_text(data.get("web_url")),
            error_message=_optional_text(data.get("error_message")),
            _client=client,
            _sandbox_path=sandbox_path,
        )

    @property
    def is_terminal(self) -> bool:
        """Whether the sandbox has ended (done, errored, failed or cancelled)."""
        return self.state in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        """Whether the sandbox is starting or running."""
        return self.state in ACTIVE_STATES

    @property
    def is_committed(self) -> bool:
        """Whether the sandbox ended by committing its changes."""
        return self.state == "done" and self.status_reason == "committed"

    @property
    def is_awaiting_approval(self) -> bool:
        """Whether the sandbox's changes wait for a human's approval (see ``web_url``)."""
        return self.state == "done" and self.status_reason == "awaiting_approval"

    @property
    def has_no_changes(self) -> bool:
        """Whether the sandbox ended successfully without changing anything."""
        return self.state == "done" and self.status_reason == "no_changes"

    def _log(self, name: str) -> LogStream:
        if self._client is None or not self._sandbox_path:
            raise RuntimeError("this SandboxStatus is not bound to a sandbox")
        return LogStream(self._client, f"{self._sandbox_path}/logs/{name}")

    def stdout(self) -> LogStream:
        """Open the sandbox's merged stdout and stderr (``GET S/logs/stdout``).

        Returns:
            A log stream; iterate over it inside a ``with`` block.

        """
        return self._log("stdout")

    def network(self) -> LogStream:
        """Open the sandbox's network log, one JSON object per line (``GET S/logs/network``).

        Returns:
            A log stream; iterate over it inside a ``with`` block.

        """
        return self._log("network")

    def __repr__(self) -> str:
        parts = [f"state={self.state!r}"]
        if self.status_reason:
            parts.append(f"status_reason={self.status_reason!r}")
        if self.exit_code is not None:
            parts.append(f"exit_code={self.exit_code}")
        for name in ("commit_id", "web_url", "error_message"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value!r}")
        return f"SandboxStatus({', '.join(parts)})"


class LogStream:
    """A sandbox log read as lines while it is being written.

    Use it as a context manager; iterating yields decoded lines without their newline::

        with sandbox.status().stdout() as log:
            for line in log:
                print(line)

    Args:
        client: The API client.
        path: The log's API path.

    """

    def __init__(self, client: Client, path: str):
        self._client = client
        self.path = path
        self._context: AbstractContextManager[httpx.Response] | None = None
        self._response: httpx.Response | None = None

    def __enter__(self) -> LogStream:
        context = self._client._stream("GET", self.path)
        self._response = context.__enter__()
        self._context = context
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying response (idempotent)."""
        context, self._context, self._response = self._context, None, None
        if context is not None:
            context.__exit__(None, None, None)

    def _require_open(self) -> httpx.Response:
        if self._response is None:
            raise RuntimeError("LogStream must be used inside a 'with' block")
        return self._response

    def __iter__(self) -> Iterator[str]:
        return self._require_open().iter_lines()

    def iter_bytes(self) -> Iterator[bytes]:
        """Yield raw chunks as the server sends them (inside a ``with`` block).

        Yields:
            Byte chunks.

        """
        yield from self._require_open().iter_bytes()

    def read(self) -> bytes:
        """Read the whole log (inside a ``with`` block).

        Returns:
            The log's bytes.

        """
        return self._require_open().read()

    def __repr__(self) -> str:
        return f"LogStream(path={self.path!r})"
