"""The command line that starts one sandbox: the overlay mount helper → ``bwrap`` → the agent.

Isolation, in order of appearance: a private mount namespace (made by the helper, or the server's own when it
mounts as root) holds the overlay (it disappears with the
sandbox); bubblewrap then builds a fresh root from a tmpfs with read-only system directories, the repository
overlay at the mountpoint as the only writable persistent place, a private ``/tmp``, new
user/pid/ipc/uts/net/cgroup namespaces (the network namespace is private even with ``network: true``: the
sandbox reaches out only through the egress proxy), no further user namespaces (``--disable-userns``), a
non-root uid with every capability dropped, the seccomp filter of `tilde.server.sandbox.seccomp`, and
``--die-with-parent``. The agent is bound read-only from the installed package after the repository, at a
path no mountpoint may take, so nothing a repository holds can shadow or replace it.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tilde.server.sandbox.image_root import agent_runtime
from tilde.server.sandbox.settings import HOST_IMAGE, SandboxSettings

__all__ = [
    "AGENT_DIR",
    "AGENT_SCRIPT",
    "HELPER_SCRIPT",
    "RUN_DIR",
    "ImageChoice",
    "ImageMount",
    "LaunchPaths",
    "bwrap_command",
    "direct_argv",
    "masked_etc_entries",
    "namespace_argv",
    "resolve_image",
]

#: Where the per-sandbox host run directory (sockets, agent config) appears inside the sandbox.
RUN_DIR = "/run/tilde"
#: Where the agent script appears inside the sandbox (read-only).
AGENT_DIR = "/.tilde"
AGENT_SCRIPT = str(Path(__file__).with_name("_agent.py"))
HELPER_SCRIPT = str(Path(__file__).with_name("_mount_helper.py"))
#: Top-level directories the runtime provides itself (never taken from an image).
_RUNTIME_DIRS = frozenset({"/dev", "/proc", "/sys", "/tmp", "/run", AGENT_DIR})


@dataclass(frozen=True)
class ImageChoice:
    """How an image name maps onto this machine.

    Attributes:
        rootfs: Root filesystem directory, or None for the host's own (read-only) root or an OCI image.
        note: Human-readable explanation shown in the sandbox's status.
        error: Set when the image cannot be used (strict mode, missing rootfs, ``host`` not enabled).
        reference: The OCI image to pull (or take from the cache) and run; None for a root filesystem or the
            host's.

    """

    rootfs: str | None
    note: str
    error: str | None = None
    reference: str | None = None


def resolve_image(settings: SandboxSettings, image: str) -> ImageChoice:
    """Map an image reference to a root filesystem, the host's root, or an OCI image.

    The name ``host`` (and a registration pointing at ``host``) means the host's root filesystem, only when
    ``allow_host_image`` is on; a registered name means its directory; ``"*"`` registers every other name;
    anything else is an OCI image reference (refused in ``strict_images`` mode).

    Args:
        settings: Runtime settings (``images``, ``strict_images``, ``allow_host_image``).
        image: The requested image reference.

    Returns:
        The choice; ``error`` is set when the sandbox must fail with ``image_not_found``.

    """
    registered = settings.images.get(image)
    every = registered is None and image != HOST_IMAGE and "*" in settings.images
    rootfs = settings.images["*"] if every else (HOST_IMAGE if image == HOST_IMAGE else registered)
    if rootfs == HOST_IMAGE:
        if not settings.allow_host_image:
            return ImageChoice(
                None,
                "",
                f"image {image!r} is the host's root filesystem, which this server does not allow "
                "(an administrator enables it with the sandbox setting allow_host_image)",
            )
        scope = " (every image name on this server)" if every else ""
        return ImageChoice(None, f"image {image} → host root filesystem (local runtime){scope}")
    if rootfs is not None:
        if not os.path.isdir(rootfs):
            return ImageChoice(rootfs, "", f"root filesystem of image {image!r} not found: {rootfs}")
        return ImageChoice(rootfs, f"image {image} → registered root filesystem {rootfs} (local runtime)")
    if settings.strict_images:
        return ImageChoice(None, "", f"image {image!r} is not registered with this server")
    return ImageChoice(None, "", reference=image)


@dataclass(frozen=True)
class ImageMount:
    """An OCI image's system overlay as bubblewrap binds it.

    Attributes:
        merged: Host path of the mounted system overlay (the image's layers under a throw-away upper layer).
        uid: User id of the image's processes inside the sandbox.
        gid: Group id inside the sandbox.

    """

    merged: str
    uid: int
    gid: int


@functools.lru_cache(maxsize=1)
def masked_etc_entries(root: str = "/etc") -> tuple[tuple[str, bool], ...]:
    """Entries of ``/etc`` that are not world-readable, as ``(path, is_dir)``.

    The sandbox user maps to the server's own user outside, so owner permissions would let it read files such
    as ``/etc/shadow``; these entries are covered instead, leaving only what any local user may read.
    """
    masked: list[tuple[str, bool]] = []
    for directory, dirnames, filenames in os.walk(root):
        for name in list(dirnames):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode) and (info.st_mode & 0o005) != 0o005:
                masked.append((path, True))
                dirnames.remove(name)
        for name in filenames:
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and not info.st_mode & 0o004:
                masked.append((path, False))
    return tuple(masked)


@dataclass(frozen=True)
class LaunchPaths:
    """Host paths of one sandbox.

    Attributes:
        lower: The hard-link tree (overlay lower layer).
        upper: The overlay upper layer (collects writes).
        work: The overlay work directory.
        merged: Mount point of the overlay (inside the private mount namespace only).
        run: Per-sandbox directory bound at `RUN_DIR` (agent config, unix sockets).

    """

    lower: str
    upper: str
    work: str
    merged: str
    run: str


def _interpreter() -> tuple[str, str]:
    """Return the host's real Python binary and its installation prefix (the agent runs on it)."""
    return os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)


def _under(path: str, dirs: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def bwrap_command(
    settings: SandboxSettings,
    paths: LaunchPaths,
    *,
    mountpoint: str,
    network: bool,
    rootfs: str | None,
    info_fd: int,
    seccomp_fd: int | None = None,
    image: ImageMount | None = None,
    agent_code: str | None = None,
) -> tuple[list[str], list[str]]:
    """Bubblewrap's options and the agent command it runs.

    Args:
        settings: Runtime settings.
        paths: The sandbox's host directories (``merged`` must hold the mounted overlay when bwrap starts).
        mountpoint: Where the repository appears inside.
        network: Share the host network namespace. The runtime never asks for it (networked sandboxes go
            through the egress proxy); kept for callers that build a command line of their own.
        rootfs: Registered root filesystem, or None for the host root.
        info_fd: File descriptor bubblewrap writes its JSON info (child pid) to.
        seccomp_fd: Memory file holding the compiled seccomp filter (None: no filter).
        image: The system overlay of an OCI image to use as ``/`` (writable, thrown away with the sandbox),
            or None (``rootfs`` or the host's root, read-only).
        agent_code: The agent compiled for the server's interpreter (a ``.pyc`` file), run instead of its
            source unless a registered root filesystem brings an interpreter of its own.

    Returns:
        ``(options, command)``: the options go to bwrap through ``--args`` (so they are not visible in the
        sandbox's process list), the command follows ``--`` on its command line.

    """
    python, prefix = _interpreter()
    options = ["--unshare-all", "--die-with-parent", "--new-session"]
    if network:
        options.append("--share-net")
    options += ["--hostname", settings.hostname]
    uid, gid = settings.uid, settings.gid
    agent_binds: list[tuple[str, str]] = []
    if image is not None:
        # The image's own root, through its throw-away upper layer; the agent brings its own interpreter.
        runtime = agent_runtime()
        options += ["--bind", image.merged, "/"]
        agent_binds = list(runtime.binds)
        agent_python: str | tuple[str, ...] = runtime.argv
        uid, gid = image.uid, image.gid
    else:
        options += _tmpfs_root(settings, mountpoint, rootfs, prefix)
        agent_python = "/usr/bin/python3" if rootfs is not None else python
    options += [
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        "--bind", paths.run, RUN_DIR,
        "--bind", paths.merged, mountpoint,
        # After the repository, so that no mountpoint (however spelt) can cover the agent.
        "--ro-bind", AGENT_SCRIPT, AGENT_DIR + "/agent.py",
    ]  # fmt: skip
    script = AGENT_DIR + "/agent.py"
    if agent_code is not None and (image is not None or rootfs is None):
        options += ["--ro-bind", agent_code, AGENT_DIR + "/agent.pyc"]
        script = AGENT_DIR + "/agent.pyc"
    for source, target in agent_binds:
        options += ["--ro-bind", source, target]
    if image is None:
        options += ["--remount-ro", "/"]
    options += [
        "--unshare-user", "--uid", str(uid), "--gid", str(gid),
        "--disable-userns",
        "--cap-drop", "ALL",
        "--info-fd", str(info_fd),
        "--chdir", mountpoint,
    ]  # fmt: skip
    if seccomp_fd is not None:
        options += ["--seccomp", str(seccomp_fd)]
    interpreter = [agent_python] if isinstance(agent_python, str) else list(agent_python)
    return options, [*interpreter, "-I", "-S", script, RUN_DIR + "/agent.json"]


def _tmpfs_root(settings: SandboxSettings, mountpoint: str, rootfs: str | None, prefix: str) -> list[str]:
    """Options of a read-only root made of a tmpfs with the registered root's or the host's directories."""
    options: list[str] = []
    # The root is always a fresh tmpfs (made read-only at the end) with directories bound into it, so the
    # mountpoint and the runtime's own mount points can be created whatever the image contains.
    options += ["--tmpfs", "/"]
    if rootfs is not None:
        for name in sorted(os.listdir(rootfs)):
            source, target = os.path.join(rootfs, name), "/" + name
            if target in _RUNTIME_DIRS:
                continue
            if mountpoint == target or mountpoint.startswith(target + "/"):
                # The repository takes this place: a read-only image directory would leave no room to create
                # the mountpoint below it (an image's /mnt, /home or /srv).
                continue
            if os.path.islink(source):
                options += ["--symlink", os.readlink(source), target]
            else:
                options += ["--ro-bind", source, target]
    else:
        bound: list[str] = []
        for directory in [*settings.system_dirs, *settings.extra_ro_binds]:
            if os.path.islink(directory):
                options += ["--symlink", os.readlink(directory), directory]
            elif os.path.exists(directory):
                options += ["--ro-bind", directory, directory]
                bound.append(os.path.realpath(directory))
        if not _under(prefix, bound):
            options += ["--ro-bind", prefix, prefix]
        for path, is_dir in masked_etc_entries() if _under("/etc", bound) else ():
            options += ["--tmpfs", path, "--remount-ro", path] if is_dir else ["--ro-bind", "/dev/null", path]
    return options


def direct_argv(bwrap: str, args_fd: int, command: list[str]) -> list[str]:
    """Return the argv when the server mounted the overlay (bwrap reads its options from ``args_fd``)."""
    return [bwrap, "--args", str(args_fd), "--", *command]


def namespace_argv(
    bwrap: str,
    paths: LaunchPaths,
    options: list[str],
    command: list[str],
    *,
    as_root: bool,
    lower_layers: list[str] | None = None,
    system: dict[str, Any] | None = None,
) -> list[str]:
    """Return the argv that first mounts the overlay in a private mount namespace (the mount helper).

    Used when the server cannot mount in its own namespace; without root, the helper also creates a user
    namespace in which the (unprivileged) overlay mount is allowed.

    Args:
        bwrap: The bubblewrap executable.
        paths: The sandbox's host directories.
        options: Bubblewrap's options (the helper passes them on through a memory file).
        command: The agent command.
        as_root: Whether the server runs as root (then no user namespace is needed).
        lower_layers: The overlay's lower layers, topmost first (default: ``paths.lower`` alone).
        system: An OCI image's system overlay to mount first, ``{"lower": [...] (topmost first), "upper",
            "work", "merged"}``.

    """
    python, _ = _interpreter()
    spec: dict[str, Any] = {
        "lower": list(lower_layers or [paths.lower]),
        "upper": paths.upper,
        "work": paths.work,
        "merged": paths.merged,
        # Without root, overlayfs keeps whiteout/opaque markers in user.* xattrs.
        "userxattr": not as_root,
        "user_namespace": not as_root,
    }
    if system is not None:
        spec["system"] = system
    helper = [python, "-I", "-S", HELPER_SCRIPT, json.dumps(spec), "--"]
    return [*helper, bwrap, *options, "--", *command]
