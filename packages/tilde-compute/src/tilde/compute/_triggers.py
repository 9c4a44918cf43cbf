"""Sandbox triggers: sandboxes the server starts by itself when a commit touches matching paths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _CompactRepr, _text

if TYPE_CHECKING:
    from tilde.core import Client
    from tilde.core.pagination import PaginatedIterator


@dataclass(slots=True, repr=False)
class SandboxTriggerCondition(_CompactRepr):
    """One condition of a trigger; a trigger fires when any of its conditions matches a commit's changes.

    Attributes:
        type: ``"prefix"`` (paths under ``prefix``) or ``"path_exact"`` (the one ``path``).
        prefix: The path prefix, for ``prefix`` conditions.
        path: The exact path, for ``path_exact`` conditions.
        diff_type: ``"any"`` (default), ``"added"``, ``"removed"`` or ``"changed"``.

    """

    type: str = ""
    prefix: str = ""
    path: str = ""
    diff_type: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SandboxTriggerCondition:
        """Build a condition from its wire form.

        Args:
            data: The condition object.

        Returns:
            The condition.

        """
        return cls(_text(data, "type"), _text(data, "prefix"), _text(data, "path"), _text(data, "diff_type"))

    def to_dict(self) -> dict[str, str]:
        """Return the wire form, without empty fields.

        Returns:
            The condition object.

        """
        return {name: value for name, value in asdict(self).items() if value}


@dataclass(slots=True, repr=False)
class SandboxTriggerConfig(_CompactRepr):
    """The sandbox a trigger starts.

    Attributes:
        image: The image to run.
        command: The command's argv.
        mountpoint: Where the repository appears (server default ``/sandbox``).
        path_prefix: Mount only this part of the repository.
        timeout_seconds: Stop the sandbox after this long.
        env_vars: Environment variables of the sandbox.

    """

    image: str
    command: list[str] = field(default_factory=list)
    mountpoint: str = ""
    path_prefix: str = ""
    timeout_seconds: int | None = None
    env_vars: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SandboxTriggerConfig:
        """Build a config from its wire form.

        Args:
            data: The ``sandbox_config`` object.

        Returns:
            The config.

        """
        command = data.get("command")
        env = data.get("env_vars")
        timeout = data.get("timeout_seconds")
        return cls(
            image=_text(data, "image"),
            command=[str(part) for part in command] if isinstance(command, list) else [],
            mountpoint=_text(data, "mountpoint"),
            path_prefix=_text(data, "path_prefix"),
            timeout_seconds=int(timeout)
            if isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
            else None,
            env_vars={str(k): str(v) for k, v in env.items()} if isinstance(env, Mapping) else {},
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the wire form, without empty fields.

        Returns:
            The ``sandbox_config`` object.

        """
        body: dict[str, Any] = {"image": self.image}
        if self.command:
            body["command"] = list(self.command)
        if self.mountpoint:
            body["mountpoint"] = self.mountpoint
        if self.path_prefix:
            body["path_prefix"] = self.path_prefix
        if self.timeout_seconds is not None:
            body["timeout_seconds"] = self.timeout_seconds
        if self.env_vars:
            body["env_vars"] = dict(self.env_vars)
        return body


ConditionLike = Mapping[str, Any] | SandboxTriggerCondition
ConfigLike = Mapping[str, Any] | SandboxTriggerConfig


def _conditions_body(conditions: Sequence[ConditionLike]) -> list[dict[str, Any]]:
    return [c.to_dict() if isinstance(c, SandboxTriggerCondition) else dict(c) for c in conditions]


def _config_body(config: ConfigLike) -> dict[str, Any]:
    return config.to_dict() if isinstance(config, SandboxTriggerConfig) else dict(config)


class SandboxTriggerRun:
    """One evaluation of a trigger against a commit.

    Attributes:
        id: The run id.
        repository_id: The repository's id.
        trigger_id: The trigger's id.
        commit_id: The commit that was evaluated.
        status: ``pending``, ``created`` (a sandbox was started), ``skipped`` or ``failed``.
        reason: Why a run was skipped or failed (machine-readable).
        sandbox_id: The sandbox started, for ``created`` runs.
        matched_paths: The changed paths that matched the trigger's conditions.
        created_at: When the run was recorded.
        updated_at: When the run last changed.

    """

    def __init__(self, data: Mapping[str, Any]):
        self.id = _text(data, "id")
        self.repository_id = _text(data, "repository_id")
        self.trigger_id = _text(data, "trigger_id")
        self.commit_id = _text(data, "commit_id")
        self.status = _text(data, "status")
        self.reason = _text(data, "reason")
        sandbox_id = data.get("sandbox_id")
        self.sandbox_id: str | None = str(sandbox_id) if sandbox_id else None
        paths = data.get("matched_paths")
        self.matched_paths: list[str] = [str(p) for p in paths] if isinstance(paths, list) else []
        self.created_at: datetime | None = parse_timestamp(data.get("created_at"))
        self.updated_at: datetime | None = parse_timestamp(data.get("updated_at"))

    def __repr__(self) -> str:
        return f"SandboxTriggerRun(id={self.id!r}, status={self.status!r})"


class SandboxTriggerRuns:
    """The run history of one trigger, newest first.

    Args:
        client: The API client.
        path: The runs' API path (``T/runs``).

    """

    def __init__(self, client: Client, path: str):
        self._client = client
        self.path = path

    def list(
        self, *, after: str | None = None, amount: int | None = None, page_size: int | None = None
    ) -> PaginatedIterator[SandboxTriggerRun]:
        """List the trigger's runs.

        Args:
            after: Start after this cursor.
            amount: Yield at most this many runs.
            page_size: Runs per request.

        Returns:
            A single-pass iterator of runs.

        """
        return self._client._paginate(
            self.path, SandboxTriggerRun, amount=amount, page_size=page_size, after=after
        )

    def __repr__(self) -> str:
        return f"SandboxTriggerRuns(path={self.path!r})"


class SandboxTrigger:
    """A trigger: on each commit touching paths that match its conditions, the server starts a sandbox.

    Attributes:
        id: The trigger id.
        name: Its name.
        description: Its description.
        enabled: Whether it fires.
        conditions: When it fires.
        sandbox_config: The sandbox it starts.
        run_as: ``{"type", "id"}`` of the principal the sandbox runs as, or None for the trigger's creator.
        repository_id: The repository's id.
        created_by: Who created it.
        created_at: When it was created.
        updated_at: When it last changed.

    """

    def __init__(self, client: Client, org: str, repo: str, data: Mapping[str, Any]):
        self._client = client
        self._org = org
        self._repo = repo
        self._load(data)

    def _load(self, data: Mapping[str, Any]) -> None:
        self.id = _text(data, "id")
        self.name = _text(data, "name")
        self.description = _text(data, "description")
        self.enabled = bool(data.get("enabled", False))
        conditions = data.get("conditions")
        self.conditions: list[SandboxTriggerCondition] = (
            [SandboxTriggerCondition.from_dict(c) for c in conditions if isinstance(c, Mapping)]
            if isinstance(conditions, list)
            else []
        )
        config = data.get("sandbox_config")
        self.sandbox_config: SandboxTriggerConfig | None = (
            SandboxTriggerConfig.from_dict(config) if isinstance(config, Mapping) else None
        )
        run_as = data.get("run_as")
        self.run_as: dict[str, Any] | None = dict(run_as) if isinstance(run_as, Mapping) else None
        self.repository_id = _text(data, "repository_id")
        self.created_by = _text(data, "created_by")
        self.created_at: datetime | None = parse_timestamp(data.get("created_at"))
        self.updated_at: datetime | None = parse_timestamp(data.get("updated_at"))

    @property
    def _path(self) -> str:
        return f"/organizations/{self._org}/repositories/{self._repo}/sandbox-triggers/{self.id}"

    @property
    def runs(self) -> SandboxTriggerRuns:
        """The trigger's run history."""
        return SandboxTriggerRuns(self._client, f"{self._path}/runs")

    def refresh(self) -> SandboxTrigger:
        """Re-read the trigger from the server, updating this object.

        Returns:
            This trigger.

        """
        self._load(self._client._get_json(self._path))
        return self

    def update(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        conditions: Sequence[ConditionLike] | None = None,
        sandbox_config: ConfigLike | None = None,
        run_as: Mapping[str, str] | None = None,
    ) -> SandboxTrigger:
        """Change some of the trigger's settings; only the given ones are sent.

        Args:
            name: A new name.
            description: A new description.
            conditions: New conditions (replacing all of them).
            sandbox_config: A new sandbox configuration (replacing it).
            run_as: A new principal to run as.

        Returns:
            A new object with the updated trigger (this one is left as it was).

        """
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if description is not None:
            body["description"] = description
        if conditions is not None:
            body["conditions"] = _conditions_body(conditions)
        if sandbox_config is not None:
            body["sandbox_config"] = _config_body(sandbox_config)
        if run_as is not None:
            body["run_as"] = dict(run_as)
        data = self._client._put_json(self._path, json=body) or {}
        return SandboxTrigger(self._client, self._org, self._repo, data)

    def toggle(self, *, enabled: bool) -> SandboxTrigger:
        """Enable or disable the trigger.

        Args:
            enabled: Whether the trigger should fire.

        Returns:
            A new object with the updated trigger.

        """
        data = self._client._patch_json(self._path, json={"enabled": enabled}) or {}
        return SandboxTrigger(self._client, self._org, self._repo, data)

    def delete(self) -> None:
        """Delete the trigger."""
        self._client._delete(self._path)

    def __repr__(self) -> str:
        return f"SandboxTrigger(id={self.id!r}, name={self.name!r})"


class SandboxTriggers:
    """The sandbox triggers of one repository.

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
        return f"/organizations/{self._org}/repositories/{self._repo}/sandbox-triggers"

    def _build(self, data: Mapping[str, Any]) -> SandboxTrigger:
        return SandboxTrigger(self._client, self._org, self._repo, data)

    def list(
        self, *, after: str | None = None, amount: int | None = None, page_size: int | None = None
    ) -> PaginatedIterator[SandboxTrigger]:
        """List the repository's triggers, oldest first.

        Args:
            after: Start after this cursor.
            amount: Yield at most this many triggers.
            page_size: Triggers per request.

        Returns:
            A single-pass iterator of triggers.

        """
        return self._client._paginate(
            self._path, self._build, amount=amount, page_size=page_size, after=after
        )

    def get(self, trigger_id: str) -> SandboxTrigger:
        """Fetch one trigger.

        Args:
            trigger_id: The trigger id.

        Returns:
            The trigger.

        """
        return self._build(self._client._get_json(f"{self._path}/{trigger_id}"))

    def create(
        self,
        *,
        name: str,
        conditions: Sequence[ConditionLike],
        sandbox_config: ConfigLike,
        description: str = "",
        run_as: Mapping[str, str] | None = None,
    ) -> SandboxTrigger:
        """Create a trigger (enabled).

        Args:
            name: The trigger's name (at most 100 characters).
            conditions: 1 to 10 conditions, as dicts (sent verbatim) or :class:`SandboxTriggerCondition`.
            sandbox_config: The sandbox to start (``image`` required): dict or :class:`SandboxTriggerConfig`.
            description: A description.
            run_as: ``{"type": "agent" | "role", "id": ...}``: run the sandbox as that principal.

        Returns:
            The new trigger.

        """
        body: dict[str, Any] = {
            "name": name,
            "conditions": _conditions_body(conditions),
            "sandbox_config": _config_body(sandbox_config),
        }
        if description:
            body["description"] = description
        if run_as is not None:
            body["run_as"] = dict(run_as)
        return self._build(self._client._post_json(self._path, json=body) or {})

    def delete(self, trigger_id: str) -> None:
        """Delete a trigger.

        Args:
            trigger_id: The trigger id.

        """
        self._client._delete(f"{self._path}/{trigger_id}")

    def __repr__(self) -> str:
        return f"SandboxTriggers({self._org}/{self._repo})"
