"""The sandbox's host processes: the ``bwrap`` tree observed through a pidfd, and small pipe/file helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["SandboxProcess", "read_info", "read_pipe", "remove_trees"]

logger = logging.getLogger("tilde.server.sandbox")

#: How long to wait for the sandbox's processes to vanish after killing its pid 1.
_KILL_WAIT = 10.0


class SandboxProcess:
    """The ``unshare`` → ``bwrap`` process tree of one sandbox, observed without blocking threads."""

    def __init__(self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.proc = proc
        self.child_pid: int | None = None  # the sandbox's pid 1, from bwrap's --info-fd
        self.exited = loop.create_future()
        self._pidfd = os.pidfd_open(proc.pid)
        self._loop = loop
        loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        if not self.exited.done():
            self.exited.set_result(self.proc.wait())

    def close(self) -> None:
        """Stop watching the process (its pidfd is closed)."""
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    async def kill(self) -> None:
        """Kill every process of the sandbox and wait until they are gone."""
        if self.exited.done():
            return
        # Killing the sandbox's pid 1 tears down its pid namespace; bwrap outside exits only once every
        # process inside is gone, so the upper layer is quiet when `exited` resolves.
        if self.child_pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.child_pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), _KILL_WAIT)
        if not self.exited.done():
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.exited


async def read_pipe(
    loop: asyncio.AbstractEventLoop, fd: int
) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    """Wrap the read end ``fd`` of a pipe in a stream reader (close the returned transport when done)."""
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


async def read_info(reader: asyncio.StreamReader, process: SandboxProcess) -> None:
    """Parse bwrap's info JSON (written once, pretty-printed) for the sandbox's pid 1."""
    data = b""
    while True:
        chunk = await reader.read(4096)
        if not chunk:
            return
        data += chunk
        try:
            info = json.loads(data)
        except ValueError:
            continue
        if isinstance(info, dict) and isinstance(info.get("child-pid"), int):
            process.child_pid = info["child-pid"]
        return


def _remove_tree(path: Path) -> None:
    """Remove one tree, opening up directories the sandbox or overlayfs left without permissions.

    overlayfs leaves its ``work/work`` directory with mode 000, and sandbox code may ``chmod`` its own
    directories likewise. As root that does not matter; as an ordinary user such a directory can be neither
    listed nor emptied until its permissions are restored, so the error handler restores them and removes
    the entry again. The handler is called with the failing function, which for a directory ``rmtree``
    could not open is ``os.open`` (it cannot simply be called again with the path alone).
    """
    retried: set[str] = set()

    def force(func: Any, failed: str, _exc: Any) -> None:
        if failed in retried:
            return  # it failed again with its permissions restored: give up on it (reported below)
        retried.add(failed)
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed), 0o700)
        try:
            info = os.lstat(failed)
        except OSError:
            return
        if stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(OSError):
                os.chmod(failed, 0o700)
            if func in (os.rmdir, os.unlink, os.remove):
                with contextlib.suppress(OSError):
                    os.rmdir(failed)
                if not os.path.lexists(failed):
                    return
            # Opening or listing it failed (or it is not empty yet): remove it as a tree of its own.
            _rmtree(failed, force)
        else:
            with contextlib.suppress(OSError):
                os.unlink(failed)

    if path.exists() or path.is_symlink():
        _rmtree(str(path), force)
    if path.exists():
        logger.warning("could not remove %s completely", path)


def _rmtree(path: str, handler: Any) -> None:
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=handler)
    else:  # ``onerror`` is deprecated from 3.12 on
        shutil.rmtree(path, onerror=handler)


def remove_trees(paths: list[str]) -> None:
    """Remove directory trees (missing ones are fine; overlayfs's mode-000 work directories included)."""
    for path in paths:
        _remove_tree(Path(path))
