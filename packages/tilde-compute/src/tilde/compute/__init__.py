"""Sandboxes, shells, one-shot execution and triggers for the Tilde SDK.

``tilde.compute.Client`` is a ``tilde.data.Client`` whose repositories also have ``shell()``, ``execute()``,
``sandboxes`` and ``sandbox_triggers``; the ``tilde-sdk`` facade mixes :class:`ComputeRepositoryMixin` into
its own repository class.
"""

from tilde.compute._exec import KILLED_EXIT_CODE, TIMEOUT_EXIT_CODE
from tilde.compute._output import OutputStream, RunResult
from tilde.compute._process import CommandStream, Process
from tilde.compute._repository import Client, ComputeRepositoryMixin, Repository
from tilde.compute._sandboxes import Sandbox, Sandboxes
from tilde.compute._shell import Shell
from tilde.compute._status import LogStream, SandboxStatus
from tilde.compute._triggers import (
    SandboxTrigger,
    SandboxTriggerCondition,
    SandboxTriggerConfig,
    SandboxTriggerRun,
    SandboxTriggerRuns,
    SandboxTriggers,
)
from tilde.compute._version import __version__

__all__ = [
    "KILLED_EXIT_CODE",
    "TIMEOUT_EXIT_CODE",
    "Client",
    "CommandStream",
    "ComputeRepositoryMixin",
    "LogStream",
    "OutputStream",
    "Process",
    "Repository",
    "RunResult",
    "Sandbox",
    "SandboxStatus",
    "SandboxTrigger",
    "SandboxTriggerCondition",
    "SandboxTriggerConfig",
    "SandboxTriggerRun",
    "SandboxTriggerRuns",
    "SandboxTriggers",
    "Sandboxes",
    "Shell",
    "__version__",
]
