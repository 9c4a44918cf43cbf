"""How compute extends ``tilde.data``'s repository handle, and a ready client for compute-only installs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

import tilde.data
from tilde.compute._execute import execute as _execute
from tilde.compute._sandboxes import Sandboxes
from tilde.compute._shell import Shell
from tilde.compute._triggers import SandboxTriggers

if TYPE_CHECKING:
    from tilde.compute._output import RunResult
    from tilde.core import Client as CoreClient


class _RepositoryHandle(Protocol):
    """What the mixin needs from the repository class it is mixed into (``tilde.data.Repository``)."""

    @property
    def _client(self) -> CoreClient: ...

    @property
    def org(self) -> str: ...

    @property
    def name(self) -> str: ...


class ComputeRepositoryMixin:
    """Adds sandboxes, shells, one-shot execution and triggers to a repository handle.

    Mix it in front of ``tilde.data.Repository``; it uses the handle's ``_client``, ``org`` and ``name``.
    """

    def shell(
        self: _RepositoryHandle,
        *,
        image: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: int | None = None,
        mountpoint: str | None = None,
        path_prefix: str | None = None,
        network: bool | None = None,
    ) -> Shell:
        """Start a service sandbox and return a shell on it (the sandbox is created right away).

        Use it as a context manager: a clean exit commits the sandbox's changes, an exception discards them::

            with repo.shell(image="python:3.12") as sh:
                print(sh.run("ls /sandbox").stdout)

        Args:
            image: The image (default: the client's ``default_sandbox_image``).
            env: Environment variables of the sandbox.
            timeout: The sandbox's lifetime limit in seconds.
            mountpoint: Where the repository appears (server default ``/sandbox``).
            path_prefix: Mount only this part of the repository.
            network: Allow network access (Tilde's local server; default off): through an HTTP(S) proxy,
                for callers with the ``UseSandboxNetwork`` action.

        Returns:
            The shell.

        """
        client = self._client
        sandbox = Sandboxes(client, self.org, self.name).create(
            image=image or client._config.default_sandbox_image,
            mode="service",
            env=env,
            mountpoint=mountpoint,
            path_prefix=path_prefix,
            timeout_seconds=timeout,
            network=network,
        )
        return Shell(client, sandbox, owned=True)

    def execute(
        self: _RepositoryHandle,
        command: str | Sequence[str],
        *,
        image: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: int | None = None,
        check: bool = True,
        mountpoint: str | None = None,
        path_prefix: str | None = None,
        network: bool | None = None,
    ) -> RunResult:
        """Run a command in a new one-shot sandbox and wait for it; its changes commit if it succeeds.

        Args:
            command: A shell command line (run with ``sh -c``) or an argv list.
            image: The image (default: the client's ``default_sandbox_image``).
            env: Environment variables of the sandbox.
            timeout: The sandbox's ``timeout_seconds``.
            check: Raise :class:`~tilde.core.errors.CommandError` when the exit status is not 0.
            mountpoint: Where the repository appears (server default ``/sandbox``).
            path_prefix: Mount only this part of the repository.
            network: Allow network access (Tilde's local server; default off), as for `shell`.

        Returns:
            The output (stdout and stderr merged, in ``stdout``) and the exit status.

        """
        client = self._client
        return _execute(
            Sandboxes(client, self.org, self.name),
            command,
            image=image or client._config.default_sandbox_image,
            env=env,
            timeout=timeout,
            check=check,
            mountpoint=mountpoint,
            path_prefix=path_prefix,
            network=network,
        )

    @property
    def sandboxes(self: _RepositoryHandle) -> Sandboxes:
        """The repository's sandboxes."""
        return Sandboxes(self._client, self.org, self.name)

    @property
    def sandbox_triggers(self: _RepositoryHandle) -> SandboxTriggers:
        """The repository's sandbox triggers."""
        return SandboxTriggers(self._client, self.org, self.name)


class Repository(ComputeRepositoryMixin, tilde.data.Repository):
    """A repository handle with data and compute features (for installs without the ``tilde-sdk`` facade)."""


class Client(tilde.data.Client[Repository]):
    """A client whose ``repository()`` handles have compute features (``shell``, ``execute``, ...).

    Takes the same arguments as ``tilde.data.Client``.
    """

    repository_class: ClassVar[type[tilde.data.Repository]] = Repository
