"""Sandbox handles (:class:`Sandbox`) and the repository's sandbox collection (:class:`Sandboxes`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tilde.compute._frames import command_argv
from tilde.compute._status import ACTIVE_STATES, SandboxStatus
from tilde.core.errors import SandboxError
from tilde.core.names import check_uuid, segment

if TYPE_CHECKING:
    from tilde.core import Client
    from tilde.core.pagination import PaginatedIterator

#: How long one status long poll asks the server to hold the request (below the client's 30 s API timeout).
LONG_POLL_SECONDS = 20.0
#: The published client's cadence, used when the server answers long polls at once (it does not support them).
FALLBACK_POLL_SECONDS = 1.0
#: How long ``execute`` and ``Shell.__enter__`` wait for a sandbox by default.
DEFAULT_WAIT_SECONDS = 300.0


class Sandbox:
    """A handle on one sandbox; constructing it makes no request.

    Args:
        client: The API client.
        org: The organization's name.
        repo: The repository's name.
        id: The sandbox id (it is also the id of the session holding the sandbox's changes).

    """

    def __init__(self, client: Client, org: str, repo: str, id: str):
        self._client = client
        self._org = org
        self._repo = repo
        self.id = id
        #: The last status this handle fetched (its owner, e.g. a shell, learns from it whether it ended).
        self._last_status: SandboxStatus | None = None

    @classmethod
    def from_dict(cls, client: Client, org: str, repo: str, data: Mapping[str, Any]) -> Sandbox:
        """Build a handle from a ``Sandbox`` object (or a create answer); only its id is kept.

        Args:
            client: The API client.
            org: The organization's name.
            repo: The repository's name.
            data: The decoded JSON object (``id``, or ``sandbox_id`` as the create call answers).

        Returns:
            The sandbox handle.

        """
        return cls(client, org, repo, str(data.get("id") or data.get("sandbox_id") or ""))

    @property
    def sandbox_id(self) -> str:
        """The sandbox id; the same as `id` (named like `Session.session_id` and `Shell.sandbox_id`)."""
        return self.id

    @property
    def _path(self) -> str:
        repository = f"/organizations/{segment(self._org)}/repositories/{segment(self._repo)}"
        return f"{repository}/sandboxes/{segment(self.id)}"

    def status(self, *, wait: float | None = None, while_status: str | None = None) -> SandboxStatus:
        """Fetch the sandbox's status (``GET S/status``).

        Args:
            wait: Ask the server to hold the request up to this many seconds (at most 60) while the status
                stays the same; servers without long polling answer at once.
            while_status: With ``wait``: the status to wait out (default: while the sandbox is active).

        Returns:
            The current status.

        """
        params: dict[str, str] = {}
        timeout: float | None = None
        if wait is not None:
            params["wait"] = f"{max(0.0, min(wait, 60.0)):g}"
            if while_status is not None:
                params["while"] = while_status
            timeout = wait + 15.0
        response = self._client._request(
            "GET", f"{self._path}/status", params=params or None, timeout=timeout
        )
        status = SandboxStatus.from_dict(response.json(), client=self._client, sandbox_path=self._path)
        self._last_status = status
        return status

    def _wait_while(self, states: frozenset[str], while_status: str | None, timeout: float) -> SandboxStatus:
        """Return the first status outside ``states``, learning of changes through the long poll.

        A server that ignores ``wait`` answers at once with an unchanged status; after one such answer this
        falls back to polling every second, like the published client.
        """
        deadline = time.monotonic() + timeout
        long_poll = True
        while True:
            remaining = deadline - time.monotonic()
            if long_poll:
                wait = max(0.0, min(LONG_POLL_SECONDS, remaining))
                asked = time.monotonic()
                status = self.status(wait=wait, while_status=while_status)
                if status.state not in states:
                    return status
                if wait >= 2 * FALLBACK_POLL_SECONDS and time.monotonic() - asked < wait / 2:
                    long_poll = False
            else:
                status = self.status()
                if status.state not in states:
                    return status
                time.sleep(max(0.0, min(FALLBACK_POLL_SECONDS, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                raise SandboxError(
                    f"Sandbox {self.id} is still {status.state or 'pending'} after {timeout:g} s"
                )

    def wait(self, *, timeout: float = DEFAULT_WAIT_SECONDS) -> SandboxStatus:
        """Block until the sandbox ends.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            The terminal status.

        Raises:
            SandboxError: If the sandbox is still active after ``timeout`` seconds (it is not cancelled).

        """
        return self._wait_while(ACTIVE_STATES, None, timeout)

    def wait_until_running(self, *, timeout: float = DEFAULT_WAIT_SECONDS) -> SandboxStatus:
        """Block until the sandbox is running.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            The ``running`` status.

        Raises:
            SandboxError: If the sandbox ended first, or is still starting after ``timeout`` seconds.

        """
        status = self._wait_while(frozenset({"starting", ""}), "starting", timeout)
        if status.state != "running":
            detail = f": {status.error_message}" if status.error_message else ""
            raise SandboxError(
                f"Sandbox {self.id} entered terminal state {status.state}/{status.status_reason}"
                f" before running{detail}"
            )
        return status

    def finish(self) -> None:
        """Stop a service sandbox gracefully and commit its changes (``POST S/finish``); returns at once."""
        self._client._request("POST", f"{self._path}/finish")

    def cancel(self) -> None:
        """Abort the sandbox and discard its changes (``DELETE S``)."""
        self._client._delete(self._path)

    def delete(self) -> None:
        """Alias of :meth:`cancel`."""
        self.cancel()

    def __repr__(self) -> str:
        return f"Sandbox(id={self.id!r})"


class Sandboxes:
    """The sandboxes of one repository.

    Args:
        client: The API client.
        org: The organization's name.
        repo: The repository's name.

    """

    def __init__(self, client: Client, org: str, repo: str):
        self._client = client
        self._org = org
        self._repo = repo

    @property
    def _path(self) -> str:
        return f"/organizations/{segment(self._org)}/repositories/{segment(self._repo)}/sandboxes"

    def list(
        self, *, after: str | None = None, amount: int | None = None, page_size: int | None = None
    ) -> PaginatedIterator[Sandbox]:
        """List the repository's sandboxes (lazily, page by page).

        Args:
            after: Start after this cursor.
            amount: Yield at most this many sandboxes.
            page_size: Sandboxes per request.

        Returns:
            A single-pass iterator of sandbox handles.

        """

        def parse(item: dict[str, Any]) -> Sandbox:
            return Sandbox(self._client, self._org, self._repo, str(item.get("id", "")))

        return self._client._paginate(self._path, parse, amount=amount, page_size=page_size, after=after)

    def get(self, sandbox_id: str) -> Sandbox:
        """Return a handle on one sandbox; no request is made.

        Args:
            sandbox_id: The sandbox id.

        Returns:
            The sandbox handle.

        """
        return Sandbox(self._client, self._org, self._repo, check_uuid(sandbox_id, "sandbox id"))

    def create(
        self,
        *,
        image: str,
        command: str | Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        mountpoint: str | None = None,
        path_prefix: str | None = None,
        timeout_seconds: int | None = None,
        run_as: Mapping[str, str] | None = None,
        mode: str | None = None,
        network: bool | None = None,
        resources: Mapping[str, float] | None = None,
    ) -> Sandbox:
        """Start a sandbox (``POST R/sandboxes``); only the arguments given are sent.

        Args:
            image: The image to run (e.g. ``"python:3.12"``).
            command: The main command; a string runs through ``sh -c``.
            env: Environment variables of the sandbox.
            mountpoint: Where the repository appears (server default ``/sandbox``).
            path_prefix: Mount only this part of the repository.
            timeout_seconds: Stop the sandbox after this long.
            run_as: ``{"type": "agent" | "role", "id": ...}`` to run as another principal.
            mode: ``"one-shot"`` (server default), ``"service"`` or ``"interactive"``.
            network: Allow network access (an extension of Tilde's local server; default off). The caller
                needs the ``UseSandboxNetwork`` action; the sandbox then reaches public addresses through an
                HTTP(S) proxy (``HTTP_PROXY``/``HTTPS_PROXY`` are set inside), not the host's network.
            resources: Resource limits below the server's defaults, or up to its ceilings (an extension of
                Tilde's local server): ``memory_bytes``, ``processes``, ``disk_bytes``, ``open_files``,
                ``cpus``.

        Returns:
            A handle on the new sandbox.

        """
        body: dict[str, Any] = {"image": image}
        if command is not None:
            body["command"] = command_argv(command)
        if mode is not None:
            body["mode"] = mode
        if env is not None:
            body["env_vars"] = dict(env)
        if mountpoint is not None:
            body["mountpoint"] = mountpoint
        if path_prefix is not None:
            body["path_prefix"] = path_prefix
        if timeout_seconds is not None:
            body["timeout_seconds"] = timeout_seconds
        if run_as is not None:
            body["run_as"] = dict(run_as)
        if network is not None:
            body["network"] = network
        if resources is not None:
            body["resources"] = dict(resources)
        data = self._client._post_json(self._path, json=body) or {}
        return Sandbox(self._client, self._org, self._repo, str(data["sandbox_id"]))

    def __repr__(self) -> str:
        return f"Sandboxes({self._org}/{self._repo})"
