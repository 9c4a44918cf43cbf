"""A sandbox's resource limits: effective values, ``resources`` overrides, and the watcher that enforces them.

The watcher ends a sandbox which passed its memory or disk limit (``failed/oom``, ``failed/disk_quota``).

What enforces each limit (see ``docs/architecture.md``):

* memory of all processes together, process count, CPU share: the sandbox's cgroups when the machine offers
  them (`tilde.server.sandbox.cgroups`); otherwise ``RLIMIT_AS`` per process and ``RLIMIT_NPROC`` (counted per
  host user, real only when the server is not root) — and no CPU share;
* bytes written to the repository mount and ``/tmp`` together: `disk_usage` of the overlay's upper layer and
  the sandbox's ``/tmp`` directory, polled, plus ``RLIMIT_FSIZE`` so no single file passes the limit;
* open files: ``RLIMIT_NOFILE`` of every process (enforced whatever the uid: capabilities are dropped);
* wall time: ``timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tilde.server.errors import ApiError

if TYPE_CHECKING:
    from tilde.server.sandbox.cgroups import SandboxCgroup
    from tilde.server.sandbox.settings import SandboxSettings

__all__ = [
    "RESOURCE_FIELDS",
    "LimitBreach",
    "SandboxLimits",
    "disk_usage",
    "oom_breach",
    "parse_resources",
    "pids_breach",
    "private_tmp",
    "watch_limits",
]

#: Request field -> (settings default, settings ceiling) of the ``resources`` object.
RESOURCE_FIELDS = {
    "memory_bytes": ("memory_limit_bytes", "max_memory_limit_bytes"),
    "processes": ("process_limit", "max_process_limit"),
    "disk_bytes": ("disk_limit_bytes", "max_disk_limit_bytes"),
    "open_files": ("open_files_limit", "max_open_files_limit"),
    "cpus": ("cpu_limit", "max_cpu_limit"),
}
#: Shortest pause between two measurements of the disk usage (seconds).
_POLL = 0.25


@dataclass(frozen=True)
class SandboxLimits:
    """The limits one sandbox runs under (None: unlimited).

    Attributes:
        memory_bytes: Memory of all its processes together.
        processes: Processes (and threads) at once.
        disk_bytes: Bytes written to the repository mount and ``/tmp`` together.
        open_files: Open files per process.
        cpus: CPU time as a number of CPUs (``0.5``: half of one).

    """

    memory_bytes: int | None = None
    processes: int | None = None
    disk_bytes: int | None = None
    open_files: int | None = None
    cpus: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the ``resources`` object of the full Sandbox."""
        return {name: getattr(self, name) for name in RESOURCE_FIELDS}

    def rlimits(self, settings: SandboxSettings, *, cgroup_controllers: frozenset[str]) -> dict[str, int]:
        """Return the per-process limits (``{"RLIMIT_NOFILE": n, ...}``) the agent applies to every process.

        ``RLIMIT_AS`` stands in for the memory limit only without a memory cgroup (it limits each process's
        address space, not their sum, and breaks programs that reserve much more than they use);
        ``RLIMIT_NPROC`` for the process limit only without a pids cgroup.
        """
        limits: dict[str, int] = {"RLIMIT_CORE": 0}
        if self.memory_bytes and "memory" not in cgroup_controllers:
            limits["RLIMIT_AS"] = self.memory_bytes
        if self.processes and "pids" not in cgroup_controllers:
            # Counts every process of the host user, so only a stand-in for a pids cgroup.
            limits["RLIMIT_NPROC"] = self.processes
        sizes = [n for n in (settings.file_size_limit_bytes, self.disk_bytes) if n]
        if sizes:
            limits["RLIMIT_FSIZE"] = min(sizes)
        if self.open_files:
            limits["RLIMIT_NOFILE"] = self.open_files
        return limits


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_sandbox", message)


def parse_resources(value: Any, settings: SandboxSettings) -> SandboxLimits:
    """Validate the request's ``resources`` object against the server's ceilings.

    Args:
        value: ``resources`` from the CreateSandbox body (None or absent: the server's defaults).
        settings: The runtime settings (defaults and ceilings).

    Returns:
        The effective limits: each requested value, else the default (capped at the ceiling).

    Raises:
        ApiError: 400 for an unknown key, a value that is not a positive number, or one above the ceiling.

    """
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise _bad("resources must be an object")
    unknown = sorted(set(value) - set(RESOURCE_FIELDS))
    if unknown:
        raise _bad(f"unknown resources: {', '.join(map(str, unknown))} (known: {', '.join(RESOURCE_FIELDS)})")
    chosen: dict[str, Any] = {}
    for name, (default_key, ceiling_key) in RESOURCE_FIELDS.items():
        default = getattr(settings, default_key)
        ceiling = getattr(settings, ceiling_key)
        if ceiling is None:
            ceiling = default
        requested = value.get(name)
        if requested is None:
            chosen[name] = default if default is None else min(default, ceiling)
            continue
        integral = name != "cpus"
        if (
            isinstance(requested, bool)
            or not isinstance(requested, (int, float))
            or requested <= 0
            or (integral and int(requested) != requested)
        ):
            kind = "an integer" if integral else "a number"
            raise _bad(f"resources.{name} must be {kind} greater than 0")
        if ceiling is not None and requested > ceiling:
            raise _bad(f"resources.{name} ({requested}) exceeds this server's ceiling ({ceiling})")
        chosen[name] = int(requested) if integral else float(requested)
    return SandboxLimits(**chosen)


def private_tmp(options: list[str], directory: str) -> list[str]:
    """Bubblewrap ``options`` with ``/tmp`` bound from the host ``directory`` instead of a tmpfs.

    A tmpfs would live in memory with a size of its own; a host directory beside the upper layer is counted
    with it against the disk limit.
    """
    result: list[str] = []
    i = 0
    while i < len(options):
        if options[i] == "--tmpfs" and i + 1 < len(options) and options[i + 1] == "/tmp":
            result += ["--bind", directory, "/tmp"]
            i += 2
            continue
        result.append(options[i])
        i += 1
    return result


def disk_usage(paths: list[str]) -> int:
    """Bytes allocated by the files and directories under ``paths`` (hard-linked files counted once).

    Directories the sandbox made unreadable are opened up again (the server owns them), so usage cannot be
    hidden from the measurement.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = list(paths)
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except PermissionError:
            try:
                os.chmod(directory, 0o700)
                entries = list(os.scandir(directory))
            except OSError:
                continue
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
    return total


@dataclass(frozen=True)
class LimitBreach:
    """Why a sandbox is ended: its ``status_reason`` and ``error_message``."""

    reason: str
    message: str


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.4g} {unit}"
    return f"{n} bytes"


def oom_breach(limits: SandboxLimits, cgroup: SandboxCgroup | None) -> LimitBreach | None:
    """Return a breach when the memory limit killed one of the sandbox's processes."""
    if cgroup is None or not cgroup.oom_kills() or not limits.memory_bytes:
        return None
    return LimitBreach(
        "oom", f"the sandbox's processes used more than their memory limit ({_size(limits.memory_bytes)})"
    )


def pids_breach(limits: SandboxLimits, cgroup: SandboxCgroup | None) -> LimitBreach | None:
    """Return a breach when the process limit refused forks (reported only for a sandbox that failed)."""
    if cgroup is None or not limits.processes:
        return None
    refused = cgroup.refused_forks()
    if not refused:
        return None
    return LimitBreach(
        "pids",
        f"the sandbox reached its process limit ({limits.processes}); forks refused: {refused}",
    )


async def watch_limits(
    limits: SandboxLimits, cgroup: SandboxCgroup | None, writable: list[str]
) -> LimitBreach:
    """Return once the sandbox passed its memory or disk limit (runs until cancelled otherwise).

    Args:
        limits: The sandbox's limits.
        cgroup: Its cgroups (None without any: then only the disk is watched).
        writable: The host directories its writes land in (the upper layer and ``/tmp``).

    """
    loop = asyncio.get_running_loop()
    pause = _POLL
    while True:
        breach = oom_breach(limits, cgroup)
        if breach is not None:
            return breach
        if limits.disk_bytes:
            started = loop.time()
            used = await loop.run_in_executor(None, disk_usage, writable)
            # A large tree is measured less often, so the measurement costs at most ~20 % of one CPU.
            pause = max(_POLL, 4 * (loop.time() - started))
            if used > limits.disk_bytes:
                return LimitBreach(
                    "disk_quota",
                    f"the sandbox wrote {_size(used)} to its repository mount and /tmp, more than its limit "
                    f"({_size(limits.disk_bytes)})",
                )
        elif cgroup is None or "memory" not in cgroup.dirs:
            await asyncio.Event().wait()  # nothing to watch: wait to be cancelled
        await asyncio.sleep(pause)
