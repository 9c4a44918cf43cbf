"""Compatibility module: sandbox triggers (`tilde.compute`)."""

from tilde.compute import (
    SandboxTrigger,
    SandboxTriggerCondition,
    SandboxTriggerConfig,
    SandboxTriggerRun,
    SandboxTriggerRuns,
    SandboxTriggers,
)

__all__ = [
    "SandboxTrigger",
    "SandboxTriggerCondition",
    "SandboxTriggerConfig",
    "SandboxTriggerRun",
    "SandboxTriggerRuns",
    "SandboxTriggers",
]
