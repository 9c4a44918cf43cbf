"""Sandbox triggers: sandboxes the server starts by itself when a commit touches matching paths.

The conditions and sandbox configuration are value types in `tilde.compute._trigger_config`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tilde.compute._trigger_config import (
    ConditionLike,
    ConfigLike,
    SandboxTriggerCondition,
    SandboxTriggerConfig,
    conditions_body,
    config_body,
)
from tilde.core.names import check_uuid, segment
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _text

if TYPE_CHECKING:
    from tilde.core import Client
    from tilde.core.pagination import PaginatedIterator


# The value types are re-exported here: tilde.compute imports every trigger name from this module.
__all__ = [
    "SandboxTrigger",
    "SandboxTriggerCondition",
    "SandboxTriggerConfig",
    "SandboxTriggerRun",
    "SandboxTriggerRuns",
    "SandboxTriggers",
]


class SandboxTriggerRun:
    """One evaluation of a trigger against a commit.

    The constructor's keyword arguments set the attributes of the same names; `SandboxTriggerRun.from_dict`
    builds a run from its wire form.

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

    def __init__(
        self,
        *,
        id: str = "",
        repository_id: str = "",
        trigger_id: str = "",
        commit_id: str = "",
        status: str = "",
        reason: str = "",
        sandbox_id: str | None = None,
        matched_paths: list[str] | None = None,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ):
        self.id = id
        self.repository_id = repository_id
        self.trigger_id = trigger_id
        self.commit_id = commit_id
        self.status = status
        self.reason = reason
        self.sandbox_id = sandbox_id
        self.matched_paths: list[str] = list(matched_paths or [])
        self.created_at = created_at
        self.updated_at = updated_at

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SandboxTriggerRun:
        """Build a run from its wire form.

        Args:
            data: The ``SandboxTriggerRun`` object.

        Returns:
            The run.

        """
        sandbox_id = data.get("sandbox_id")
        paths = data.get("matched_paths")
        return cls(
            id=_text(data, "id"),
            repository_id=_text(data, "repository_id"),
            trigger_id=_text(data, "trigger_id"),
            commit_id=_text(data, "commit_id"),
            status=_text(data, "status"),
            reason=_text(data, "reason"),
            sandbox_id=str(sandbox_id) if sandbox_id else None,
            matched_paths=[str(p) for p in paths] if isinstance(paths, list) else [],
            created_at=parse_timestamp(data.get("created_at")),
            updated_at=parse_timestamp(data.get("updated_at")),
        )

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
            self.path, SandboxTriggerRun.from_dict, amount=amount, page_size=page_size, after=after
        )

    def __repr__(self) -> str:
        return f"SandboxTriggerRuns(path={self.path!r})"


class SandboxTrigger:
    """A trigger: on each commit touching paths that match its conditions, the server starts a sandbox.

    Built by `SandboxTriggers` (or `SandboxTrigger.from_dict`); the constructor's keyword arguments set the
    attributes of the same names.

    Args:
        client: The API client.
        org: The organization's name.
        repo: The repository's name.

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

    def __init__(
        self,
        client: Client,
        org: str,
        repo: str,
        *,
        id: str = "",
        name: str = "",
        description: str = "",
        enabled: bool = False,
        conditions: list[SandboxTriggerCondition] | None = None,
        sandbox_config: SandboxTriggerConfig | None = None,
        run_as: dict[str, Any] | None = None,
        repository_id: str = "",
        created_by: str = "",
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ):
        self._client = client
        self._org = org
        self._repo = repo
        self.id = id
        self.name = name
        self.description = description
        self.enabled = enabled
        self.conditions: list[SandboxTriggerCondition] = list(conditions or [])
        self.sandbox_config = sandbox_config
        self.run_as = run_as
        self.repository_id = repository_id
        self.created_by = created_by
        self.created_at = created_at
        self.updated_at = updated_at

    @classmethod
    def from_dict(cls, client: Client, org: str, repo: str, data: Mapping[str, Any]) -> SandboxTrigger:
        """Build a trigger from its wire form.

        Args:
            client: The API client.
            org: The organization's name.
            repo: The repository's name.
            data: The ``SandboxTrigger`` object.

        Returns:
            The trigger.

        """
        trigger = cls(client, org, repo)
        trigger._load(data)
        return trigger

    def _load(self, data: Mapping[str, Any]) -> None:
        self.id = _text(data, "id")
        self.name = _text(data, "name")
        self.description = _text(data, "description")
        self.enabled = bool(data.get("enabled", False))
        conditions = data.get("conditions")
        self.conditions = (
            [SandboxTriggerCondition.from_dict(c) for c in conditions if isinstance(c, Mapping)]
            if isinstance(conditions, list)
            else []
        )
        config = data.get("sandbox_config")
        self.sandbox_config = SandboxTriggerConfig.from_dict(config) if isinstance(config, Mapping) else None
        run_as = data.get("run_as")
        self.run_as = dict(run_as) if isinstance(run_as, Mapping) else None
        self.repository_id = _text(data, "repository_id")
        self.created_by = _text(data, "created_by")
        self.created_at = parse_timestamp(data.get("created_at"))
        self.updated_at = parse_timestamp(data.get("updated_at"))

    @property
    def _path(self) -> str:
        repository = f"/organizations/{segment(self._org)}/repositories/{segment(self._repo)}"
        return f"{repository}/sandbox-triggers/{segment(self.id)}"

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
            body["conditions"] = conditions_body(conditions)
        if sandbox_config is not None:
            body["sandbox_config"] = config_body(sandbox_config)
        if run_as is not None:
            body["run_as"] = dict(run_as)
        data = self._client._put_json(self._path, json=body) or {}
        return SandboxTrigger.from_dict(self._client, self._org, self._repo, data)

    def toggle(self, *, enabled: bool) -> SandboxTrigger:
        """Enable or disable the trigger.

        Args:
            enabled: Whether the trigger should fire.

        Returns:
            A new object with the updated trigger.

        """
        data = self._client._patch_json(self._path, json={"enabled": enabled}) or {}
        return SandboxTrigger.from_dict(self._client, self._org, self._repo, data)

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
        return f"/organizations/{segment(self._org)}/repositories/{segment(self._repo)}/sandbox-triggers"

    def _build(self, data: Mapping[str, Any]) -> SandboxTrigger:
        return SandboxTrigger.from_dict(self._client, self._org, self._repo, data)

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
        return self._build(
            self._client._get_json(f"{self._path}/{segment(check_uuid(trigger_id, 'trigger id'))}")
        )

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
            "conditions": conditions_body(conditions),
            "sandbox_config": config_body(sandbox_config),
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
        self._client._delete(f"{self._path}/{segment(check_uuid(trigger_id, 'trigger id'))}")

    def __repr__(self) -> str:
        return f"SandboxTriggers({self._org}/{self._repo})"
