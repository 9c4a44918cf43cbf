"""Enter a private mount namespace, mount a sandbox's overlay there, then exec bubblewrap.

Run as ``python -I -S _mount_helper.py SPEC_JSON -- BWRAP [OPTIONS...] -- COMMAND...``. The helper makes its
own namespaces (``unshare(2)`` through ctypes, so util-linux's ``unshare`` is not needed): a mount namespace
with private propagation, and when not running as root a user namespace first, mapping the caller to root
in it so that the (unprivileged) overlay mount is allowed. The mount exists only in the namespace of this
process tree and vanishes with it (nothing to unmount on the host, even after a crash). Standard library
only; no shell involved.

``SPEC_JSON`` is ``{"lower": [layer, ...] (topmost first), "upper", "work", "merged", "userxattr",
"user_namespace"}``, with an optional ``"system": {"lower", "upper", "work", "merged"}``: the overlay of an
OCI image's layers, mounted first. Used when the server cannot mount in its own namespace (see ``mounts.py``
for the usual path as root).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18


def _fail(what: str, errno: int) -> SystemExit:
    return SystemExit(f"sandbox: {what} failed: {os.strerror(errno)}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _enter_namespaces(libc: ctypes.CDLL, user_namespace: bool) -> None:
    """Unshare the mount namespace (the user namespace first, mapped to our ids) with private propagation."""
    uid, gid = os.getuid(), os.getgid()
    flags = _CLONE_NEWNS | (_CLONE_NEWUSER if user_namespace else 0)
    if libc.unshare(flags) != 0:
        raise _fail(
            "creating a user namespace" if user_namespace else "creating a mount namespace",
            ctypes.get_errno(),
        )
    if user_namespace:
        # setgroups must be denied before an unprivileged process may write its gid map.
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    # Nothing mounted here may propagate back to the host's namespace.
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise _fail("making the mount namespace private", ctypes.get_errno())


def _mount_overlay(
    libc: ctypes.CDLL, lower: list[str], upper: str, work: str, merged: str, userxattr: bool
) -> None:
    for path in (*lower, upper, work):
        # The overlay option string separates options with "," and layers with ":"; refuse rather than escape.
        if any(char in path for char in ",:\\"):
            raise SystemExit(f"sandbox: unsupported character in layer path {path!r}")
    # redirect_dir/metacopy off: every change in the upper layer is then a plain file, whiteout or opaque
    # directory, which is all the host needs to understand when it collects the changes.
    options = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work},metacopy=off"
    # With userxattr (unprivileged mounts) redirects are never created and ``redirect_dir=off`` is refused.
    options += ",userxattr" if userxattr else ",redirect_dir=off"
    if libc.mount(b"overlay", merged.encode(), b"overlay", 0, options.encode()) != 0:
        raise _fail("mounting the overlay", ctypes.get_errno())


def main(argv: list[str]) -> None:
    """Enter the namespaces, mount, then exec bubblewrap."""
    if len(argv) < 4 or argv[2] != "--":
        raise SystemExit("usage: _mount_helper.py SPEC_JSON -- BWRAP [OPTIONS...] -- COMMAND...")
    spec = json.loads(argv[1])
    lower = spec["lower"] if isinstance(spec["lower"], list) else [spec["lower"]]
    libc = ctypes.CDLL(None, use_errno=True)
    _enter_namespaces(libc, bool(spec.get("user_namespace")))
    system = spec.get("system")
    if system:
        _mount_overlay(
            libc,
            system["lower"],
            system["upper"],
            system["work"],
            system["merged"],
            bool(spec.get("userxattr")),
        )
    _mount_overlay(libc, lower, spec["upper"], spec["work"], spec["merged"], bool(spec.get("userxattr")))
    # Hand bubblewrap its options through a memory file rather than argv: the sandbox's pid 1 is bubblewrap,
    # and its command line (host paths included) would otherwise be readable from inside. The command itself
    # must stay on the real command line.
    bwrap, rest = argv[3], argv[4:]
    split = rest.index("--") if "--" in rest else len(rest)
    args_fd = os.memfd_create("bwrap-args", 0)
    os.write(args_fd, b"".join(arg.encode() + b"\0" for arg in rest[:split]))
    os.lseek(args_fd, 0, os.SEEK_SET)
    os.execv(bwrap, [bwrap, "--args", str(args_fd), *rest[split:]])


if __name__ == "__main__":
    main(sys.argv)
