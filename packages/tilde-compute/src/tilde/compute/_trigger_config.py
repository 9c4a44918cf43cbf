"""The value types of a sandbox trigger: its conditions and the sandbox it starts, with their wire forms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tilde.data.models import _CompactRepr, _text


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


def conditions_body(conditions: Sequence[ConditionLike]) -> list[dict[str, Any]]:
    """Return the wire form of a trigger's conditions (dicts are sent verbatim).

    Args:
        conditions: The conditions, as dicts or `SandboxTriggerCondition`.

    Returns:
        The ``conditions`` array.

    """
    return [c.to_dict() if isinstance(c, SandboxTriggerCondition) else dict(c) for c in conditions]


def config_body(config: ConfigLike) -> dict[str, Any]:
    """Return the wire form of a trigger's sandbox configuration (a dict is sent verbatim).

    Args:
        config: The configuration, as a dict or a `SandboxTriggerConfig`.

    Returns:
        The ``sandbox_config`` object.

    """
    return config.to_dict() if isinstance(config, SandboxTriggerConfig) else dict(config)
