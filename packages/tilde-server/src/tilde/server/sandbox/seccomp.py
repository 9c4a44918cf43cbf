"""The sandbox's seccomp filter: system calls that only serve to attack the kernel or escape fail with EPERM.

The filter is compiled once per server process by libseccomp (through ``pyseccomp``, ctypes bindings with
libseccomp's own Python API) and handed to bubblewrap as BPF in a memory file (``--seccomp FD``). Bubblewrap
installs it after it has built the sandbox, just before it runs the agent, so the overlay mount (made earlier,
by the server or the mount helper) is unaffected and every process of the sandbox — the agent and everything
it starts — runs under it; a filter can never be removed again.

Default action: allow. Blocked with ``EPERM`` (see `BLOCKED_SYSCALLS`): the kernel keyring, eBPF,
``userfaultfd``, ``perf_event_open``, ``ptrace`` and cross-process memory access, every mount-family call,
kexec and module loading, namespace changes (``setns``, and ``unshare``/``clone`` with ``CLONE_NEWUSER``),
swap, reboot, process accounting, quotas, ``lookup_dcookie``, port I/O, and file handles
(``open_by_handle_at``, ``name_to_handle_at``). ``clone3`` answers ``ENOSYS``: its flags live in memory a
filter cannot read, and C libraries fall back to ``clone`` on that answer. ``personality`` may not turn on
``ADDR_NO_RANDOMIZE`` or ``READ_IMPLIES_EXEC``. System calls of other ABIs (32-bit x86 on x86-64) kill
the process.
"""

from __future__ import annotations

import errno
import functools
import importlib
import os
from typing import Any

__all__ = [
    "BLOCKED_SYSCALLS",
    "SeccompUnavailable",
    "compile_filter",
    "filter_memfd",
]

#: System calls that fail with EPERM whatever their arguments.
BLOCKED_SYSCALLS: tuple[str, ...] = (
    # kernel keyring
    "keyctl",
    "add_key",
    "request_key",
    # kernel attack surface rarely needed by ordinary programs
    "bpf",
    "userfaultfd",
    "perf_event_open",
    "lookup_dcookie",
    # other processes' memory
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    # the mount table
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    # namespaces (new user namespaces through unshare/clone are handled with their flag below)
    "setns",
    # the machine itself
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    # file handles bypass path-based checks
    "open_by_handle_at",
    "name_to_handle_at",
)

_CLONE_NEWUSER = 0x10000000
#: ``personality`` flags the sandbox may not set (switching off address randomisation, executable data).
_PERSONALITY_FLAGS = (0x0040000, 0x0400000)
_PERSONALITY_QUERY = 0xFFFFFFFF


class SeccompUnavailable(RuntimeError):
    """The filter cannot be built here (libseccomp or its bindings are missing)."""


def _bindings() -> Any:
    try:
        # Imported by name: the bindings ship no type information.
        return importlib.import_module("pyseccomp")
    except (ImportError, RuntimeError, OSError) as error:
        raise SeccompUnavailable(
            f"the sandbox seccomp filter needs libseccomp and the pyseccomp package ({error}); "
            "install them, or set the sandbox setting seccomp to false"
        ) from None


@functools.lru_cache(maxsize=1)
def compile_filter() -> bytes:
    """Return the filter as a BPF program (built once, then cached).

    Raises:
        SeccompUnavailable: When libseccomp cannot be loaded or refuses the rules.

    """
    seccomp = _bindings()
    deny = seccomp.ERRNO(errno.EPERM)
    try:
        rules = seccomp.SyscallFilter(seccomp.ALLOW)
        for name in BLOCKED_SYSCALLS:
            if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) < 0:
                continue  # not a system call of this architecture
            rules.add_rule(deny, name)
        user = seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_NEWUSER, _CLONE_NEWUSER)
        rules.add_rule(deny, "unshare", user)
        rules.add_rule(deny, "clone", user)
        rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        # A filter compares one argument once per rule, so "flag set and not the query value 0xffffffff"
        # becomes one rule per other bit: flag set and that bit clear.
        for flag in _PERSONALITY_FLAGS:
            for bit in range(32):
                other = 1 << bit
                if other != flag:
                    rules.add_rule(deny, "personality", seccomp.Arg(0, seccomp.MASKED_EQ, flag | other, flag))
        fd = os.memfd_create("tilde-seccomp", 0)
        try:
            with open(fd, "wb", closefd=False) as handle:
                rules.export_bpf(handle)
            os.lseek(fd, 0, os.SEEK_SET)
            size = os.fstat(fd).st_size
            program = os.read(fd, size)
        finally:
            os.close(fd)
    except OSError as error:
        raise SeccompUnavailable(f"libseccomp refused the sandbox filter: {error}") from None
    return program


def filter_memfd() -> int:
    """Return a new memory file holding the compiled filter, positioned at its start (for ``--seccomp``).

    The caller passes it to bubblewrap and closes it afterwards.

    Raises:
        SeccompUnavailable: See `compile_filter`.

    """
    program = compile_filter()
    fd = os.memfd_create("tilde-seccomp", 0)
    view = memoryview(program)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
