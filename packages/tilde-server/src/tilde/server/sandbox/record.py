"""`SandboxRecord`: one sandbox's request, status and bookkeeping, observable from any thread or loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tilde.server.sandbox.limits import SandboxLimits
from tilde.server.sandbox.spec import SandboxSpec

__all__ = ["ACTIVE", "TERMINAL", "RemoteSandbox", "SandboxRecord"]

logger = logging.getLogger("tilde.server.sandbox")

ACTIVE = frozenset({"starting", "running"})
TERMINAL = frozenset({"done", "errored", "failed", "cancelled"})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(eq=False)
class SandboxRecord:
    """A sandbox as the runtime tracks it.

    Attributes:
        id: Sandbox id (= session id).
        org_name: Organization name.
        repo: The repository record (``id``, ``name``, ...).
        principal: Who created it.
        actor: Whose name commits and tokens carry (the ``run_as`` principal, or the creator).
        spec: The validated request.
        directory: Host directory of the sandbox (layers, run directory, log).
        image_note: How the image was mapped on this machine.
        limits: The resource limits it runs under (the request's ``resources`` within the server's ceilings).

    """

    id: str
    org_name: str
    repo: Any
    principal: Any
    actor: Any
    spec: SandboxSpec
    directory: Path
    image_note: str = ""
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    status: str = "starting"
    status_reason: str = "created"
    exit_code: int | None = None
    commit_id: str | None = None
    web_url: str | None = None
    error_message: str | None = None
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    finished_at: str | None = None
    #: ``"cancel"`` or ``"finish"`` once requested.
    stop_request: str | None = None
    #: The message ``finish`` asked the commit to carry (None: the runtime names the commit itself).
    commit_message: str | None = None
    #: Notes for the caller, e.g. paths that could not be stored (shown in the status when present).
    warnings: list[str] = field(default_factory=list)
    #: ``(bytes done, bytes in all)`` of the image pull while the status reason is ``pulling``.
    pull_progress: tuple[int, int] | None = None
    #: Called (outside the lock, before waiters wake) after every status change: a cluster writes the
    #: record through to its shared table there.
    on_change: Callable[[SandboxRecord], None] | None = field(default=None, repr=False)
    _control_fd: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list, repr=False)

    def set_control(self, fd: int) -> None:
        """Record the pinned control socket of the agent (an ``O_PATH`` descriptor; see the lifecycle)."""
        with self._lock:
            self._control_fd = fd

    def close_control(self) -> None:
        """Forget and close the control socket descriptor (the sandbox is ending)."""
        with self._lock:
            fd, self._control_fd = self._control_fd, -1
        if fd >= 0:
            os.close(fd)

    def open_control(self) -> int | None:
        """Return a private duplicate of the control socket descriptor (close it after connecting), or None.

        Duplicating under the lock means a descriptor number is never used after the sandbox closed it (and
        the number perhaps went to another file).
        """
        with self._lock:
            return os.dup(self._control_fd) if self._control_fd >= 0 else None

    def set_pull_progress(self, done: int, total: int) -> None:
        """Record how far the image pull got (thread-safe; wakes status waiters)."""
        with self._lock:
            self.pull_progress = (done, total)
        self.notify()

    @property
    def log_path(self) -> Path:
        """The merged stdout/stderr log of the main command."""
        return self.directory / "stdout.log"

    @property
    def network_log_path(self) -> Path:
        """NDJSON network decisions (empty: there is no egress proxy yet)."""
        return self.directory / "network.ndjson"

    @property
    def is_terminal(self) -> bool:
        """Whether the sandbox has ended."""
        return self.status in TERMINAL

    def set_status(self, status: str, reason: str = "", **fields: Any) -> None:
        """Change the status (and any of ``exit_code``, ``commit_id``, ``web_url``, ``error_message``).

        A terminal status is final: later calls are ignored. Every waiter is woken.
        """
        with self._lock:
            if self.status in TERMINAL:
                return
            self.status = status
            self.status_reason = reason
            for name, value in fields.items():
                setattr(self, name, value)
            self.updated_at = _now()
            if status in TERMINAL:
                self.finished_at = self.updated_at
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:
                logger.exception("sandbox %s: sharing its status failed", self.id)
        self.notify()

    def take_final(self, state: dict[str, Any]) -> None:
        """Take a final status decided elsewhere (the cluster's table), over any status, and wake waiters.

        Args:
            state: A terminal record document (`tilde.server.sandbox.persistence.record_state`).

        """
        with self._lock:
            for name in ("status", "status_reason", "exit_code", "commit_id", "web_url", "error_message"):
                setattr(self, name, state.get(name))
            self.image_note = state.get("image_note") or self.image_note
            self.updated_at = state.get("updated_at") or _now()
            self.finished_at = state.get("finished_at") or self.updated_at
        self.notify()

    def notify(self) -> None:
        """Wake every coroutine waiting in `wait_change` (thread-safe)."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # that loop is closed; its waiter is gone

    async def wait_while(self, status: str | None, timeout: float) -> None:
        """Wait until the status differs from ``status`` (None: while active), or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            # Registered before looking: a change made (on another thread) after the look still wakes it.
            with self._waiter() as changed:
                waiting = self.status in ACTIVE if status is None else self.status == status
                remaining = deadline - time.monotonic()
                if not waiting or remaining <= 0:
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), remaining)

    async def wait_change(self, timeout: float) -> None:
        """Wait for the next `notify` (a status change), at most ``timeout`` seconds."""
        with self._waiter() as changed, contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    @contextlib.contextmanager
    def _waiter(self) -> Iterator[asyncio.Event]:
        """Yield an event of the running loop that `notify` sets while the block runs."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.append(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                self._waiters.remove(entry)

    def status_json(self) -> dict[str, Any]:
        """Return the SandboxStatus body (CONTRACT §6.2) plus ``image_note``, and ``pull`` while pulling.

        While an image is pulled the status is ``starting`` with the reason ``pulling`` and
        ``pull: {done_bytes, total_bytes}``.
        """
        body: dict[str, Any] = {
            "status": self.status,
            "status_reason": self.status_reason,
            "exit_code": self.exit_code,
            "commit_id": self.commit_id,
            "web_url": self.web_url,
            "image_note": self.image_note,
        }
        if self.status in ("failed", "errored") or self.error_message:
            body["error_message"] = self.error_message or ""
        if self.warnings:
            body["warnings"] = list(self.warnings)
        if self.pull_progress is not None and self.status_reason == "pulling":
            done, total = self.pull_progress
            body["pull"] = {"done_bytes": done, "total_bytes": total}
        return body

    def full_json(self) -> dict[str, Any]:
        """Return the full Sandbox object (list items and ``GET S``)."""
        return {
            "id": self.id,
            "repository_id": self.repo.id,
            **self.spec.to_json(),
            "resources": self.limits.to_json(),
            "volume_name": "",
            "container_id": self.id,
            "created_by_type": self.principal.type,
            "created_by": self.principal.id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            **self.status_json(),
        }


@dataclass(eq=False)
class RemoteSandbox(SandboxRecord):
    """A read-only record of a sandbox another node of the cluster runs, read from the shared table.

    It renders ``status_json`` and ``full_json`` like a local record; anything that needs the live process
    (logs, exec, finish, cancel) goes to ``node_id``. Its status long poll is served here: `wait_while`
    re-reads the table whenever the owner announces a change (``LISTEN/NOTIFY``), and at least every few
    seconds in case an announcement was missed.

    Attributes:
        node_id: The node that runs it.
        source: Re-reads the record (``refresh(record) -> bool``) and wakes waiters (``waiter(id)``): the
            cluster's `tilde.server.cluster.sandboxes.SharedSandboxes`.

    """

    node_id: str = ""
    source: Any = field(default=None, repr=False)

    async def wait_while(self, status: str | None, timeout: float) -> None:
        """Wait until the shared status differs from ``status`` (None: while active), or ``timeout`` ends."""
        deadline = time.monotonic() + timeout
        while True:
            with self.source.waiter(self.id) as changed:
                # Registered before reading: an announcement made after the read still wakes it.
                await asyncio.to_thread(self.source.refresh, self)
                waiting = self.status in ACTIVE if status is None else self.status == status
                remaining = deadline - time.monotonic()
                if not waiting or remaining <= 0:
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, self.source.poll_seconds))

    async def wait_change(self, timeout: float) -> None:
        """Wait for the owner's next announced change, at most ``timeout`` seconds, then re-read."""
        with self.source.waiter(self.id) as changed, contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)
        await asyncio.to_thread(self.source.refresh, self)
