"""Mount a sandbox's overlay in a private mount namespace, then exec bubblewrap.

Run as ``unshare --mount --propagation private -- python -I -S _mount_helper.py SPEC_JSON -- bwrap ...``, so
the mount exists only in the namespace of this process tree and vanishes with it (nothing to unmount on the
host, even after a crash). Standard library only; no shell involved.

``SPEC_JSON`` is ``{"lower", "upper", "work", "merged", "userxattr"}``. Used when the server cannot mount in
its own namespace (see ``mounts.py`` for the usual path).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys


def _mount_overlay(lower: str, upper: str, work: str, merged: str, userxattr: bool) -> None:
    for path in (lower, upper, work):
        # The overlay option string separates options with "," and layers with ":"; refuse rather than escape.
        if any(char in path for char in ",:\\"):
            raise SystemExit(f"sandbox: unsupported character in layer path {path!r}")
    # redirect_dir/metacopy off: every change in the upper layer is then a plain file, whiteout or opaque
    # directory, which is all the host needs to understand when it collects the changes.
    options = f"lowerdir={lower},upperdir={upper},workdir={work},metacopy=off"
    # With userxattr (unprivileged mounts) redirects are never created and ``redirect_dir=off`` is refused.
    options += ",userxattr" if userxattr else ",redirect_dir=off"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"overlay", merged.encode(), b"overlay", 0, options.encode()) != 0:
        errno = ctypes.get_errno()
        raise SystemExit(f"sandbox: mounting the overlay failed: {os.strerror(errno)}")


def main(argv: list[str]) -> None:
    """Mount, then exec."""
    if len(argv) < 4 or argv[2] != "--":
        raise SystemExit("usage: _mount_helper.py SPEC_JSON -- COMMAND...")
    spec = json.loads(argv[1])
    _mount_overlay(spec["lower"], spec["upper"], spec["work"], spec["merged"], bool(spec.get("userxattr")))
    # Hand bubblewrap its options through a memory file rather than argv: the sandbox's pid 1 is bubblewrap,
    # and its command line (host paths included) would otherwise be readable from inside. The command itself
    # must stay on the real command line.
    bwrap, rest = argv[3], argv[4:]
    split = rest.index("--") if "--" in rest else len(rest)
    args_fd = os.memfd_create("bwrap-args", 0)
    os.write(args_fd, b"".join(arg.encode() + b"\0" for arg in rest[:split]))
    os.lseek(args_fd, 0, os.SEEK_SET)
    os.execvp(bwrap, [bwrap, "--args", str(args_fd), *rest[split:]])


if __name__ == "__main__":
    main(sys.argv)
