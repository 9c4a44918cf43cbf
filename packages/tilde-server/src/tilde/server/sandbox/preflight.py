"""Can sandboxes run on this machine? One line saying what is missing when they cannot.

`sandbox_preflight` first looks at what it can name precisely (the bubblewrap executable, the kernel's user
namespace switches), then starts one real, empty sandbox the way the runtime does (mount helper, overlay,
bubblewrap, the interpreter the agent runs on) and reports the first line of what went wrong. Tools such as
the demo call it before doing anything else, so a machine that cannot run sandboxes fails in a second with
a sentence instead of a traceback half-way through.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from tilde.server.sandbox.bwrap import BwrapNotFound, resolve_bwrap
from tilde.server.sandbox.isolation import LaunchPaths, bwrap_command, namespace_argv
from tilde.server.sandbox.process import remove_trees
from tilde.server.sandbox.seccomp import SeccompUnavailable, compile_filter, filter_memfd
from tilde.server.sandbox.settings import SandboxSettings

__all__ = ["sandbox_preflight"]

#: How long the probe sandbox may take (it normally ends in a fraction of a second).
_PROBE_TIMEOUT = 60.0


def _sysctl(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii").strip()
    except OSError:
        return None


def _kernel_problem() -> str | None:
    """Return the disabled user-namespace switch, if any, with the command that turns it on."""
    if _sysctl("/proc/sys/user/max_user_namespaces") == "0":
        return (
            "user namespaces are disabled (user.max_user_namespaces = 0); "
            "enable them with: sudo sysctl -w user.max_user_namespaces=15000"
        )
    if os.geteuid() != 0 and _sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return (
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0); "
            "enable them with: sudo sysctl -w kernel.unprivileged_userns_clone=1"
        )
    return None


def _probe(bwrap: str, settings: SandboxSettings, directory: str | None) -> str | None:
    """Start one empty sandbox through the runtime's own launch path; its error line, or None."""
    base = tempfile.mkdtemp(prefix="tilde-preflight-", dir=directory)
    try:
        paths = LaunchPaths(
            lower=f"{base}/lower", upper=f"{base}/upper", work=f"{base}/work", merged=f"{base}/merged",
            run=f"{base}/run",
        )  # fmt: skip
        for path in (paths.lower, paths.upper, paths.work, paths.merged, paths.run):
            os.mkdir(path)
        info_r, info_w = os.pipe()
        # The filter too: a kernel without seccomp filters would fail every sandbox.
        seccomp_fd = filter_memfd() if settings.seccomp else None
        pass_fds = [info_w] if seccomp_fd is None else [info_w, seccomp_fd]
        try:
            options, command = bwrap_command(
                settings,
                paths,
                mountpoint="/sandbox",
                network=False,
                rootfs=None,
                info_fd=info_w,
                seccomp_fd=seccomp_fd,
            )
            # The agent's interpreter, started and stopped at once: the sandbox can run it.
            probe = [command[0], "-I", "-S", "-c", ""]
            argv = namespace_argv(bwrap, paths, options, probe, as_root=os.geteuid() == 0)
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    pass_fds=pass_fds,
                    timeout=_PROBE_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return f"a test sandbox did not end within {_PROBE_TIMEOUT:g} s"
            except OSError as error:
                return f"a test sandbox could not start: {error.strerror or error}"
        finally:
            for fd in (info_r, *pass_fds):
                os.close(fd)
        if done.returncode == 0:
            return None
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {done.returncode}"
    finally:
        # overlayfs leaves a mode-000 work directory behind, which remove_trees knows how to remove.
        remove_trees([base])
    if os.geteuid() != 0 and _sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        reason += (
            " (AppArmor restricts unprivileged user namespaces: "
            "kernel.apparmor_restrict_unprivileged_userns = 1)"
        )
    if "overlay" in reason and "overlay" not in _sysctl_filesystems():
        reason += " (the kernel has no overlay filesystem: sudo modprobe overlay)"
    return f"a test sandbox failed: {reason}"


def _sysctl_filesystems() -> str:
    return _sysctl("/proc/filesystems") or ""


def sandbox_preflight(settings: SandboxSettings | None = None, *, directory: str | None = None) -> str | None:
    """Check that sandboxes can run here.

    Args:
        settings: The runtime settings to check (default: the defaults, with ``TILDE_SERVER_BWRAP``).
        directory: Where the probe's overlay directories go (default: the system's temporary directory);
            pass the server's data directory to check the filesystem it will use.

    Returns:
        None when they can; otherwise one line saying what is missing, such as ``"bubblewrap not found: ..."``
        or ``"unprivileged user namespaces are disabled (...)"``.

    """
    settings = settings or SandboxSettings()
    if not settings.enabled:
        return "the sandbox runtime is disabled in this server's configuration"
    try:
        bwrap = resolve_bwrap(settings.bwrap)
    except BwrapNotFound as error:
        return str(error)
    if settings.seccomp:
        try:
            compile_filter()
        except SeccompUnavailable as error:
            return str(error)
    return _kernel_problem() or _probe(bwrap, settings, directory)
