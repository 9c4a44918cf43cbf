"""Overlay mounts made directly by the server process (when it may mount: running as root).

Mounting here instead of in a helper process inside a fresh mount namespace saves starting an interpreter per
sandbox. The price is that the mount is visible in the server's namespace until the sandbox ends, so it is
detached when the sandbox ends and, after a crash, when the runtime starts again (`detach_stale`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from pathlib import Path

__all__ = ["MountError", "detach", "detach_stale", "mount_overlay", "overlay_options"]

_MNT_DETACH = 2
_libc: ctypes.CDLL | None = None


class MountError(OSError):
    """The overlay could not be mounted."""


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc


def overlay_options(lower: list[str], upper: str, work: str) -> str:
    r"""Return the overlay mount options for three layer directories.

    ``redirect_dir`` and ``metacopy`` are off so every change in the upper layer is a plain file, a whiteout
    or an opaque directory (all the change collector needs to understand).

    Raises:
        MountError: When a path contains a character the option syntax cannot carry (``,`` ``:`` ``\\``).

    """
    for path in (*lower, upper, work):
        if any(char in path for char in ",:\\"):
            raise MountError(f"unsupported character in sandbox layer path {path!r}")
    layers = ":".join(lower)
    return f"lowerdir={layers},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off"


def mount_overlay(lower: list[str], upper: str, work: str, merged: str) -> None:
    """Mount an overlay of the ``lower`` layers (topmost first) and ``upper`` at ``merged``.

    Raises:
        MountError: With the system's reason (e.g. EPERM when not allowed to mount).

    """
    options = overlay_options(lower, upper, work).encode()
    if _lib().mount(b"overlay", merged.encode(), b"overlay", 0, options) != 0:
        errno = ctypes.get_errno()
        raise MountError(errno, f"mounting the sandbox overlay failed: {os.strerror(errno)}")


def detach(merged: str) -> None:
    """Lazily unmount ``merged`` (no error when nothing is mounted there)."""
    _lib().umount2(merged.encode(), _MNT_DETACH)


def detach_stale(root: Path) -> list[str]:
    """Detach every mount below ``root`` left behind by a previous server process; returns their paths."""
    prefix = str(root.resolve()).rstrip("/") + "/"
    stale: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 4 and fields[4].startswith(prefix):
                stale.append(fields[4])
    for path in sorted(stale, reverse=True):
        detach(path)
    return stale
