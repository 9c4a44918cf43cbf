"""Per-sandbox control groups: total memory, process count and CPU share of every process of one sandbox.

`detect` looks at what the machine offers, cgroup v2 first (a unified hierarchy whose ``memory`` and ``pids``
controllers can be enabled beneath the server's own cgroup), then cgroup v1 (one hierarchy per controller,
writable by the server). Each sandbox gets one cgroup in each hierarchy, beneath a directory of its server
(``tilde-<hash of the data directory>``) inside the server's own cgroup, so several servers on one machine
never touch each other's. Processes join it before bubblewrap starts (`join_argv` wraps the command line),
so everything the sandbox forks is counted, whatever uid the sandbox maps to.

Without a writable hierarchy (an unprivileged server, usually) `detect` returns a `Cgroups` with no
controllers and the runtime falls back to resource limits per process (see ``docs/architecture.md``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CONTROLLERS", "Cgroups", "SandboxCgroup", "detect", "join_argv"]

logger = logging.getLogger("tilde.server.sandbox")

#: The controllers the runtime uses.
CONTROLLERS = ("memory", "pids", "cpu")
#: The CFS period used to express a CPU limit (microseconds).
_CPU_PERIOD = 100_000
#: Counts the sandbox's events (OOM kills, refused forks) are read from.
_V1_EVENTS = {"memory": ("memory.oom_control", "oom_kill"), "pids": ("pids.events", "max")}
_V2_EVENTS = {"memory": ("memory.events", "oom_kill"), "pids": ("pids.events", "max")}
#: The shell snippet `join_argv` runs: write its own pid into each ``cgroup.procs`` given, then exec.
_JOIN = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"'


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """Return ``(mount point, root, fstype, super options)`` of every cgroup mount in ``mountinfo``."""
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 10:
            continue
        dash = fields.index("-")
        fstype = fields[dash + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        options = set(fields[dash + 3].split(",")) if len(fields) > dash + 3 else set()
        point = fields[4].replace("\\040", " ")
        found.append((point, fields[3], fstype, options))
    return found


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """Map each controller (``""`` for the unified hierarchy) to this process's cgroup path."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            paths[""] = parts[2]
        for name in parts[1].split(","):
            if name:
                paths[name] = parts[2]
    return paths


def _join(point: str, root: str, own: str) -> Path:
    """Return the directory of cgroup ``own`` in a hierarchy mounted at ``point`` showing its ``root``."""
    if root != "/" and (own == root or own.startswith(root.rstrip("/") + "/")):
        own = own[len(root) :]
    return Path(point) / own.lstrip("/")


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def _count(path: Path, key: str) -> int:
    """Read the counter ``key`` of a flat-keyed cgroup file (0 when missing)."""
    try:
        text = path.read_text(encoding="ascii")
    except OSError:
        return 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


def _try_mkdir(path: Path) -> bool:
    try:
        path.mkdir(exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


@dataclass(frozen=True)
class Cgroups:
    """The control groups available to this server.

    Attributes:
        version: ``2``, ``1``, or ``0`` when none can be used.
        bases: Controller name -> this server's directory in that controller's hierarchy (with cgroup v2
            every controller shares one directory).

    """

    version: int = 0
    bases: dict[str, Path] = field(default_factory=dict)

    @property
    def controllers(self) -> frozenset[str]:
        """The controllers that limit sandboxes."""
        return frozenset(self.bases)

    def describe(self) -> str:
        """One line for the log: what is enforced how."""
        if not self.bases:
            return "no writable cgroups: per-process resource limits only"
        return f"cgroup v{self.version}: {', '.join(sorted(self.bases))}"

    def create(self, name: str) -> SandboxCgroup:
        """Create the cgroups of one sandbox (``name``: its id) in every hierarchy.

        Raises:
            OSError: When a directory cannot be created (what was created is removed again).

        """
        made: dict[str, Path] = {}
        try:
            for controller, base in self.bases.items():
                directory = base / name
                if directory not in made.values():
                    base.mkdir(exist_ok=True)  # in case it was removed since start-up
                    directory.mkdir()
                made[controller] = directory
        except OSError:
            SandboxCgroup(self.version, made).remove()
            raise
        return SandboxCgroup(self.version, made)

    def sweep(self) -> int:
        """Remove the cgroups sandboxes of this server left behind (a crash), killing what still runs there.

        Returns:
            How many were removed.

        """
        removed = 0
        for base in set(self.bases.values()):
            with contextlib.suppress(OSError):
                for child in base.iterdir():
                    if child.is_dir():
                        SandboxCgroup(self.version, {"": child}).remove()
                        removed += not child.exists()
        return removed

    def close(self) -> None:
        """Remove this server's (empty) directories; ones still in use stay."""
        for base in set(self.bases.values()):
            with contextlib.suppress(OSError):
                base.rmdir()


@dataclass
class SandboxCgroup:
    """The cgroups of one sandbox.

    Attributes:
        version: ``1`` or ``2``.
        dirs: Controller name -> the sandbox's directory in that hierarchy.

    """

    version: int
    dirs: dict[str, Path]

    def set_limits(self, *, memory_bytes: int | None, processes: int | None, cpus: float | None) -> None:
        """Write the limits (None: unlimited) into the controllers that exist."""
        memory = self.dirs.get("memory")
        pids = self.dirs.get("pids")
        cpu = self.dirs.get("cpu")
        if self.version == 2:
            if memory is not None and memory_bytes:
                _write(memory / "memory.max", str(memory_bytes))
                with contextlib.suppress(OSError):
                    _write(memory / "memory.swap.max", "0")
            if pids is not None and processes:
                _write(pids / "pids.max", str(processes))
            if cpu is not None and cpus:
                _write(cpu / "cpu.max", f"{int(cpus * _CPU_PERIOD)} {_CPU_PERIOD}")
            return
        if memory is not None and memory_bytes:
            _write(memory / "memory.limit_in_bytes", str(memory_bytes))
            # With swap accounting, memory + swap is limited to the same amount (no swapping out of it).
            with contextlib.suppress(OSError):
                _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
        if pids is not None and processes:
            _write(pids / "pids.max", str(processes))
        if cpu is not None and cpus:
            _write(cpu / "cpu.cfs_period_us", str(_CPU_PERIOD))
            _write(cpu / "cpu.cfs_quota_us", str(int(cpus * _CPU_PERIOD)))

    def procs_files(self) -> list[str]:
        """Return the ``cgroup.procs`` files a process writes its pid into to join (one per hierarchy)."""
        return sorted({str(d / "cgroup.procs") for d in self.dirs.values()})

    def oom_kills(self) -> int:
        """How many processes the memory limit killed."""
        return self._event("memory")

    def refused_forks(self) -> int:
        """How many forks the process limit refused."""
        return self._event("pids")

    def _event(self, controller: str) -> int:
        directory = self.dirs.get(controller)
        if directory is None:
            return 0
        filename, key = (_V2_EVENTS if self.version == 2 else _V1_EVENTS)[controller]
        return _count(directory / filename, key)

    def pids(self) -> set[int]:
        """Every process still in the sandbox's cgroups."""
        found: set[int] = set()
        for directory in set(self.dirs.values()):
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        return found

    def kill(self) -> None:
        """SIGKILL every process in the cgroups (repeated while a fork races the kill)."""
        for directory in set(self.dirs.values()):
            if (directory / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    _write(directory / "cgroup.kill", "1")
        for delay in _waits(100):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(delay)

    def remove(self) -> None:
        """Kill what is left and remove the directories (a dying process may hold one briefly)."""
        if not self.dirs:
            return
        self.kill()
        for directory in set(self.dirs.values()):
            for attempt, delay in enumerate(_waits(200)):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as error:
                    if error.errno != errno.EBUSY or attempt == 199:
                        logger.warning("could not remove cgroup %s: %s", directory, error)
                        break
                    self.kill()
                    time.sleep(delay)


def _waits(count: int) -> list[float]:
    """Return ``count`` pauses between checks: 0.5 ms doubling up to 10 ms, then 10 ms each.

    Processes that were just killed usually leave their cgroup within a millisecond or two; the sandbox's
    terminal status waits for that, so a first pause of 10 ms was often most of the wait. The total stays
    about what ``count`` pauses of 10 ms allowed.
    """
    short = [0.0005, 0.001, 0.002, 0.004, 0.008]
    return (short + [0.01] * count)[:count]


def join_argv(cgroup: SandboxCgroup | None, argv: list[str]) -> list[str]:
    """Return ``argv`` run so that its process first joins the sandbox's cgroups (unchanged without any).

    A small ``sh`` writes its own pid into each ``cgroup.procs`` and then execs ``argv``, so no process of
    the sandbox ever runs outside them (the server cannot move a process in after it started forking).
    """
    if cgroup is None or not cgroup.dirs:
        return argv
    files = cgroup.procs_files()
    return ["/bin/sh", "-c", _JOIN, "sh", str(len(files)), *files, *argv]


def _detect_v2(mounts: list[tuple[str, str, str, set[str]]], own: dict[str, str], key: str) -> Cgroups | None:
    """Use the unified hierarchy when the memory and pids controllers can be delegated to the server's dir."""
    if "" not in own:
        return None
    for point, root, fstype, _ in mounts:
        if fstype != "cgroup2":
            continue
        parent = _join(point, root, own[""])
        try:
            available = set((parent / "cgroup.controllers").read_text().split())
        except OSError:
            continue
        if not {"memory", "pids"} <= available:
            continue
        wanted = [c for c in CONTROLLERS if c in available]
        enable = " ".join("+" + c for c in wanted)
        try:
            enabled = set((parent / "cgroup.subtree_control").read_text().split())
            if not set(wanted) <= enabled:
                # Refused (EBUSY) when the server's own cgroup holds processes and is not the root.
                _write(parent / "cgroup.subtree_control", enable)
            base = parent / key
            if not _try_mkdir(base):
                continue
            _write(base / "cgroup.subtree_control", enable)
        except OSError:
            continue
        return Cgroups(2, {c: base for c in wanted})
    return None


def _detect_v1(mounts: list[tuple[str, str, str, set[str]]], own: dict[str, str], key: str) -> Cgroups | None:
    bases: dict[str, Path] = {}
    for controller in CONTROLLERS:
        if controller not in own:
            continue
        for point, root, fstype, options in mounts:
            if fstype != "cgroup" or controller not in options:
                continue
            base = _join(point, root, own[controller]) / key
            if _try_mkdir(base):
                bases[controller] = base
            break
    if not {"memory", "pids"} & set(bases):
        return None
    return Cgroups(1, bases)


def detect(data_dir: str | os.PathLike[str], *, enabled: bool = True) -> Cgroups:
    """Find the cgroups this server may create sandbox cgroups in (v2 first, then v1).

    Args:
        data_dir: The server's data directory (names this server's cgroup directories).
        enabled: False: use none (the ``cgroups`` sandbox setting).

    Returns:
        The usable hierarchies; without any, a `Cgroups` with no controllers.

    """
    if not enabled:
        return Cgroups()
    digest = hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:12]
    key = f"tilde-{digest}"
    try:
        mounts = _mounts(Path("/proc/self/mountinfo").read_text())
        own = _own_paths(Path("/proc/self/cgroup").read_text())
    except OSError:
        return Cgroups()
    return _detect_v2(mounts, own, key) or _detect_v1(mounts, own, key) or Cgroups()
