"""One sandbox from start to end: layers, process, watch, then commit or roll back, and clean up.

Runs as a coroutine on the runtime's own event loop. The final status is set only after the session was
committed or rolled back and every process, cgroup, socket and mount of the sandbox is gone, so a client that
sees a terminal status sees its effects too; the sandbox's directories are removed just after (it is the
slowest step of the tear-down, and nobody waits for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import mimetypes
import os
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilde.server.sandbox.agent_client import send_shutdown
from tilde.server.sandbox.cgroups import SandboxCgroup, join_argv
from tilde.server.sandbox.egress import OPEN_POLICY, start_egress_proxy
from tilde.server.sandbox.image_root import (
    REGISTRY_AUTH_SECRET,
    ImageUser,
    image_environment,
    image_store,
    index_environment,
    network_denied,
    package_index_policy,
    package_indexes,
    registry_credentials,
    resolve_user,
)
from tilde.server.sandbox.isolation import (
    AGENT_DIR,
    RUN_DIR,
    ImageMount,
    LaunchPaths,
    bwrap_command,
    direct_argv,
    namespace_argv,
    resolve_image,
)
from tilde.server.sandbox.layers import LowerIndex, build_lower, collect_changes
from tilde.server.sandbox.limits import LimitBreach, oom_breach, pids_breach, private_tmp, watch_limits
from tilde.server.sandbox.lower_cache import LowerTree
from tilde.server.sandbox.mounts import MountError, detach, mount_overlay
from tilde.server.sandbox.persistence import save_record
from tilde.server.sandbox.process import SandboxProcess, read_info, read_pipe, remove_trees
from tilde.server.sandbox.relay import close_server, short_path, start_api_relay, start_credentials_server
from tilde.server.sandbox.seccomp import filter_memfd

if TYPE_CHECKING:
    from tilde.server.images import LocalImage
    from tilde.server.sandbox.egress import EgressPolicy
    from tilde.server.sandbox.record import SandboxRecord
    from tilde.server.sandbox.runtime import SandboxRuntime

__all__ = ["run_sandbox"]

logger = logging.getLogger("tilde.server.sandbox")

_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Outcome:
    """How the sandbox ended, before committing."""

    status: str
    reason: str
    commit: bool = False
    fields: dict[str, Any] = field(default_factory=dict)


class _Run:
    """State of one sandbox run (see `run_sandbox`)."""

    def __init__(self, runtime: SandboxRuntime, record: SandboxRecord) -> None:
        self.rt = runtime
        self.rec = record
        self.loop = asyncio.get_running_loop()
        base = str(record.directory)
        self.paths = LaunchPaths(
            lower=f"{base}/lower",
            upper=f"{base}/upper",
            work=f"{base}/work",
            merged=f"{base}/merged",
            run=f"{base}/run",
        )
        self.index = LowerIndex()
        self.run_fd = -1
        self.servers: list[asyncio.AbstractServer] = []
        self.transports: list[asyncio.BaseTransport] = []
        self.process: SandboxProcess | None = None
        self.mounted = False
        self.lower_tree: LowerTree | None = None
        self.lower_layers: list[str] = []
        self.private_lower = False
        #: The sandbox's own ``/tmp`` on the host (beside the upper layer, so the disk limit covers both).
        self.tmp = f"{base}/tmp"
        self.cgroup: SandboxCgroup | None = None
        #: The OCI image the sandbox runs on (None: the host's root or a registered root filesystem), its
        #: user, its system overlay's directories and whether the server mounted that overlay itself.
        self.image: LocalImage | None = None
        self.image_user: ImageUser | None = None
        self.system = {"upper": f"{base}/sysupper", "work": f"{base}/syswork", "merged": f"{base}/sysroot"}
        self.system_mounted = False
        self.held = contextlib.ExitStack()
        #: The repository's (and run-as agent's) secrets, read once per run (see `_secret_env`).
        self.secrets: dict[str, str] | None = None
        #: The egress proxy's allow-list (None: no network at all).
        self.egress: EgressPolicy | None = record.spec.egress or (
            OPEN_POLICY if record.spec.network else None
        )

    # -- start ---------------------------------------------------------------------------------------------

    def _make_dirs(self) -> bool:
        """Create the per-sandbox directories; True when the session has staged changes already."""
        for path in (self.paths.upper, self.paths.work, self.paths.merged, self.paths.run, self.tmp):
            os.makedirs(path, exist_ok=True)
        if self.image is not None:
            for path in self.system.values():
                os.makedirs(path, exist_ok=True)
        os.chmod(self.paths.upper, 0o755)
        os.chmod(self.tmp, 0o755)
        return bool(self.rt.engine.has_changes(self.rec.repo.id, self.rec.id))

    def _build_lower(self, directory: str) -> LowerIndex:
        rec = self.rec
        view = self.rt.engine.session_view(rec.repo.id, rec.id, rec.spec.path_prefix)
        return build_lower(view, rec.spec.path_prefix, directory)

    async def _prepare(self) -> None:
        """Directories, and the lower layer: shared per base commit unless the session already has changes."""
        rec = self.rec
        staged = await self.loop.run_in_executor(None, self._make_dirs)
        if staged:
            os.makedirs(self.paths.lower, exist_ok=True)
            self.index = await self.loop.run_in_executor(None, self._build_lower, self.paths.lower)
            self.private_lower = True
            return
        session = await self.loop.run_in_executor(None, self.rt.engine.get_session, rec.repo.id, rec.id)
        key = (rec.repo.id, session.base_commit_id, rec.spec.path_prefix)
        self.lower_tree, self.index = await self.rt.acquire_lower(key, self._build_lower)
        self.paths = dataclasses.replace(self.paths, lower=self.lower_tree.path)
        self.lower_layers = self.lower_tree.layers
        if await self.loop.run_in_executor(None, self.rt.engine.has_changes, rec.repo.id, rec.id):
            # Something was staged while the tree was built: it may not be the commit's tree, so share it no
            # more.
            self.rt.lowers.forget(key)

    def _command(self) -> tuple[list[str] | None, str]:
        """Return the main command and its working directory.

        Without a command, a one-shot sandbox runs the image's ``Entrypoint`` + ``Cmd`` in its ``WorkingDir``;
        a given command (and every ``/exec`` without a ``cwd``) runs at the mountpoint, where the repository
        is.
        """
        spec = self.rec.spec
        if spec.command or spec.mode != "one-shot" or self.image is None:
            return spec.command, spec.mountpoint
        config = self.image.config
        return [*config.entrypoint, *config.cmd], config.working_dir or spec.mountpoint

    def _environment(self) -> dict[str, str]:
        rec = self.rec
        own = {
            "TILDE_SANDBOX_ID": rec.id,
            "TILDE_SESSION_ID": rec.id,
            "TILDE_REPOSITORY": f"{rec.org_name}/{rec.repo.name}",
        }
        if self.image is None or self.image_user is None:
            return {"PATH": _BASE_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", **own, **rec.spec.env_vars}
        base = image_environment(self.image.config.env, self.image_user, _BASE_PATH)
        # The indexes the proxy lets through win over an image's own pip settings (those would be refused).
        indexes = index_environment(package_indexes(self.rt.settings)) if self.egress is not None else {}
        return {**base, **indexes, **own, **rec.spec.env_vars}

    def _agent_config(self, status_fd: int, secrets_fd: int) -> dict[str, Any]:
        rec = self.rec
        command, cwd = self._command()
        return {
            "mode": rec.spec.mode,
            "command": command,
            "env": self._environment(),
            "secrets_fd": secrets_fd,
            "cwd": cwd,
            "control": f"{RUN_DIR}/ctl.sock",
            "api_socket": f"{RUN_DIR}/api.sock",
            "credentials_socket": f"{RUN_DIR}/creds.sock",
            "proxy_socket": f"{RUN_DIR}/proxy.sock" if self.egress is not None else None,
            "status_fd": status_fd,
            "rlimits": self.rec.limits.rlimits(
                self.rt.settings,
                cgroup_controllers=frozenset(self.cgroup.dirs) if self.cgroup else frozenset(),
            ),
        }

    def _secret_env(self) -> dict[str, str]:
        """Return the sandbox's secrets, read from the store once (an image pull may need them first)."""
        if self.secrets is None:
            self.secrets = self.rt.secret_env(self.rec)
        return self.secrets

    def _secrets_memfd(self) -> int:
        """Return a memory file holding the injected secrets as JSON, for the agent to read at start.

        Secrets never go into ``agent.json``: that file lives in the run directory under the data directory.
        The request's ``env_vars`` win over secrets (CONTRACT §6.1), so their keys are left out here.
        """
        secrets = {
            k: v
            for k, v in self._secret_env().items()
            if k not in self.rec.spec.env_vars and k != REGISTRY_AUTH_SECRET
        }
        fd = os.memfd_create("tilde-secrets", 0)
        data = json.dumps(secrets).encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def _issue_credentials(self) -> dict[str, Any]:
        rec = self.rec
        issued = self.rt.tokens.issue(rec.id, rec.actor, rec.repo.id)
        return issued.credentials_json()

    async def _spawn(self, rootfs: str | None) -> tuple[asyncio.StreamReader, asyncio.Task[None]]:
        self.run_fd = os.open(self.paths.run, os.O_PATH | os.O_DIRECTORY)
        self.servers.append(
            await start_api_relay(short_path(self.run_fd, "api.sock"), self.rt.server_address)
        )
        self.servers.append(
            await start_credentials_server(short_path(self.run_fd, "creds.sock"), self._issue_credentials)
        )
        if self.egress is not None:
            # ``network: true`` is this proxy allowing every host: the network namespace stays private.
            self.servers.append(
                await start_egress_proxy(
                    short_path(self.run_fd, "proxy.sock"),
                    self.egress,
                    self.rec.network_log_path,
                    self.rt.settings.address_rules(),
                )
            )
        status_r, status_w = os.pipe()
        info_r, info_w = os.pipe()
        secrets_fd = self._secrets_memfd()
        pass_fds = [status_w, info_w, secrets_fd]
        # Read by bubblewrap, which installs the filter just before it starts the agent.
        seccomp_fd = filter_memfd() if self.rt.settings.seccomp else None
        if seccomp_fd is not None:
            pass_fds.append(seccomp_fd)
        try:
            self._make_cgroup()
            config = self._agent_config(status_w, secrets_fd)
            Path(self.paths.run, "agent.json").write_text(json.dumps(config), encoding="utf-8")
            options, command = bwrap_command(
                self.rt.settings,
                self.paths,
                mountpoint=self.rec.spec.mountpoint,
                network=False,  # never the host's network namespace (see the egress proxy above)
                rootfs=rootfs,
                info_fd=info_w,
                seccomp_fd=seccomp_fd,
                image=self._image_mount(),
                agent_code=self.rt.agent_code,
            )
            options = private_tmp(options, self.tmp)
            argv = await self._direct_argv(options, command, pass_fds)
            if argv is None:
                argv = namespace_argv(
                    self.rt.bwrap,
                    self.paths,
                    options,
                    command,
                    as_root=os.geteuid() == 0,
                    lower_layers=self.lower_layers,
                    system={"lower": self._image_layers(), **self.system} if self.image is not None else None,
                )
            with open(self.rec.log_path, "ab") as log:
                proc = subprocess.Popen(
                    join_argv(self.cgroup, argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    pass_fds=pass_fds,
                    start_new_session=True,
                    # One malloc arena: each further one reserves 64 MiB of address space, which the agent
                    # cannot spare under RLIMIT_AS (the memory limit without a memory cgroup). Commands get
                    # the environment the agent builds, not this one.
                    env={"PATH": _BASE_PATH, "LANG": "C.UTF-8", "MALLOC_ARENA_MAX": "1"},
                )
        except BaseException:
            os.close(status_r)
            os.close(info_r)
            raise
        finally:
            for fd in pass_fds:
                os.close(fd)
        self.process = SandboxProcess(proc, self.loop)
        status_reader, transport = await read_pipe(self.loop, status_r)
        self.transports.append(transport)
        info_reader, transport = await read_pipe(self.loop, info_r)
        self.transports.append(transport)
        return status_reader, asyncio.ensure_future(read_info(info_reader, self.process))

    def _make_cgroup(self) -> None:
        """Create the sandbox's cgroups and write its limits (nothing when the server has none)."""
        if not self.rt.cgroups.controllers:
            return
        self.cgroup = self.rt.cgroups.create(self.rec.id)
        limits = self.rec.limits
        self.cgroup.set_limits(memory_bytes=limits.memory_bytes, processes=limits.processes, cpus=limits.cpus)

    async def _direct_argv(
        self, options: list[str], command: list[str], pass_fds: list[int]
    ) -> list[str] | None:
        """Mount the overlay from the server process and hand bwrap its options in a memory file.

        Returns None when this process may not mount (then the namespace helper mounts instead).
        """
        if not self.rt.direct_mounts:
            return None
        paths = self.paths
        try:
            if self.image is not None:
                system = self.system
                await self.loop.run_in_executor(
                    None,
                    mount_overlay,
                    self._image_layers(),
                    system["upper"],
                    system["work"],
                    system["merged"],
                )
                self.system_mounted = True
            await self.loop.run_in_executor(
                None, mount_overlay, self.lower_layers or [paths.lower], paths.upper, paths.work, paths.merged
            )
        except MountError as error:
            if error.errno not in (errno.EPERM, errno.EACCES):
                raise
            self.unmount()
            self.rt.direct_mounts = False
            return None
        self.mounted = True
        args_fd = os.memfd_create("bwrap-args", 0)
        pass_fds.append(args_fd)
        os.write(args_fd, b"".join(arg.encode() + b"\0" for arg in options))
        os.lseek(args_fd, 0, os.SEEK_SET)
        return direct_argv(self.rt.bwrap, args_fd, command)

    def _image_layers(self) -> list[str]:
        """Return the image's layers as overlay lower directories, topmost first."""
        assert self.image is not None
        return [str(layer) for layer in reversed(self.image.layers)]

    def _image_mount(self) -> ImageMount | None:
        if self.image is None or self.image_user is None:
            return None
        return ImageMount(self.system["merged"], self.image_user.uid, self.image_user.gid)

    async def _use_image(self, reference: str) -> Outcome | None:
        """Take the OCI image from the store (pulling it when it is not cached); an outcome on failure."""
        from tilde.server.images import ImageError, ImageNotFound

        rec = self.rec
        store = image_store(self.rt)
        # An image pulled with another repository's credentials is not taken from the cache here: ensure()
        # first has the registry confirm this sandbox's own access.
        image = await self.loop.run_in_executor(None, functools.partial(store.get, reference, private=False))
        if image is None:
            try:
                own = registry_credentials(await self.loop.run_in_executor(None, self._secret_env))
            except ValueError as error:
                message = f"image {reference}: {error}"
                return Outcome("failed", "image_pull_failed", fields={"error_message": message})
            rec.set_status("starting", "pulling")

            def progress(done: int, total: int) -> None:
                rec.set_pull_progress(done, total)

            pull = asyncio.ensure_future(
                store.ensure(reference, progress=progress, credentials=own.get if own else None)
            )
            stop = asyncio.ensure_future(self.rt.stop_event(rec).wait())
            try:
                await asyncio.wait({pull, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if not pull.done() and rec.stop_request == "cancel":
                # A cancelled sandbox does not wait for its image (the store resumes the download later).
                pull.cancel()
                with contextlib.suppress(asyncio.CancelledError, ImageError):
                    await pull
                return Outcome("cancelled", "cancelled_by_user")
            try:
                image = await pull
            except ImageNotFound as error:
                return Outcome(
                    "failed", "image_not_found", fields={"error_message": f"image {reference}: {error}"}
                )
            except ImageError as error:
                message = f"pulling image {reference} failed: {error}"
                return Outcome("failed", "image_pull_failed", fields={"error_message": message})
            rec.set_status("starting", "initializing")
        # Layers in use are never evicted from the cache while the sandbox runs.
        self.held.enter_context(store.pin(image))
        if any(os.path.lexists(layer / AGENT_DIR.lstrip("/")) for layer in image.layers):
            # The agent's files are bound there; through a symlink of the image they would land elsewhere
            # (in the repository, say).
            message = f"image {reference} has {AGENT_DIR}, which the sandbox runtime reserves for itself"
            return Outcome("failed", "image_not_found", fields={"error_message": message})
        try:
            self.image_user = resolve_user(image.layers, image.config.user, self.rt.settings)
        except LookupError as error:
            return Outcome(
                "failed", "image_not_found", fields={"error_message": f"image {reference}: {error}"}
            )
        self.image = image
        rec.image_note = (
            f"image {rec.spec.image} → {image.reference}@{image.digest} ({len(image.layers)} layers)"
        )
        if rec.spec.egress is None and not rec.spec.network:
            closed = await self.loop.run_in_executor(
                None, network_denied, self.rt.app_state, rec.principal, rec.repo
            )
            self.egress = None if closed else package_index_policy(package_indexes(self.rt.settings))
        return None

    def _pin_control_socket(self) -> int:
        """Pin the agent's control socket: a descriptor through which connections reach that very inode.

        The run directory is writable from inside, so sandbox code could swap ``ctl.sock`` for a symlink
        to some host socket; connecting by name would then make the server talk to it. Opening the socket
        inode itself (``O_PATH | O_NOFOLLOW``, checked to be a socket) and connecting through
        ``/proc/self/fd`` rules that out.
        """
        fd = os.open("ctl.sock", os.O_PATH | os.O_NOFOLLOW, dir_fd=self.run_fd)
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            os.close(fd)
            raise RuntimeError("the agent's control socket is not a socket")
        return fd

    # -- watch ---------------------------------------------------------------------------------------------

    async def run(self) -> Outcome:
        rec = self.rec
        rec.set_status("starting", "initializing")
        choice = resolve_image(self.rt.settings, rec.spec.image)
        if choice.error:
            return Outcome("failed", "image_not_found", fields={"error_message": choice.error})
        rec.image_note = choice.note
        if choice.reference is not None:
            failed = await self._use_image(choice.reference)
            if failed is not None:
                return failed
        if rec.stop_request == "cancel":
            return Outcome("cancelled", "cancelled_by_user")
        if not self._command()[0] and rec.spec.mode == "one-shot":
            message = f"image {rec.spec.image} has no Entrypoint or Cmd: the sandbox needs a command"
            return Outcome("failed", "no_command", fields={"error_message": message})
        await self._prepare()
        if rec.stop_request == "cancel":
            return Outcome("cancelled", "cancelled_by_user")
        status_reader, info_task = await self._spawn(choice.rootfs)
        assert self.process is not None
        process = self.process
        deadline = time.monotonic() + rec.spec.timeout_seconds
        stop = self.rt.stop_event(rec)
        ready = False
        exit_line: int | None = None
        line_task: asyncio.Future[bytes] | None = asyncio.ensure_future(status_reader.readline())
        stop_task = asyncio.ensure_future(stop.wait())
        limit_task = asyncio.ensure_future(
            watch_limits(
                rec.limits,
                self.cgroup,
                [self.paths.upper, self.tmp] + ([self.system["upper"]] if self.image is not None else []),
            )
        )
        try:
            while True:
                waiting: set[asyncio.Future[Any]] = {process.exited, stop_task, limit_task}
                if line_task is not None:
                    waiting.add(line_task)
                remaining = deadline - time.monotonic()
                done, _ = await asyncio.wait(
                    waiting, timeout=max(remaining, 0), return_when=asyncio.FIRST_COMPLETED
                )
                if line_task is not None and line_task in done:
                    line = line_task.result().decode("utf-8", "replace").strip()
                    line_task = asyncio.ensure_future(status_reader.readline()) if line else None
                    if line == "ready" and not ready:
                        ready = True
                        await info_task
                        rec.set_control(self._pin_control_socket())
                        rec.set_status("running", "")
                    elif line.startswith("exit "):
                        with contextlib.suppress(ValueError):
                            exit_line = int(line.split()[1])
                    continue
                if process.exited in done:
                    return self._exited(ready, exit_line, process.exited.result())
                if limit_task in done:
                    await process.kill()
                    return self._breached(limit_task.result())
                if stop_task in done:
                    return await self._stopped(process)
                if not done:
                    await process.kill()
                    return Outcome(
                        "failed",
                        "timeout",
                        fields={"error_message": f"timed out after {rec.spec.timeout_seconds} s"},
                    )
        finally:
            for task in (line_task, stop_task, info_task, limit_task):
                if task is not None and not task.done():
                    task.cancel()
            rec.close_control()

    @staticmethod
    def _breached(breach: LimitBreach, **fields: Any) -> Outcome:
        return Outcome("failed", breach.reason, fields={**fields, "error_message": breach.message})

    def _exited(self, ready: bool, exit_line: int | None, returncode: int) -> Outcome:
        rec = self.rec
        # A process killed by the memory limit ends the sandbox as `oom`, however the rest reacted to it.
        breach = oom_breach(rec.limits, self.cgroup)
        if breach is not None:
            return self._breached(breach)
        outcome = self._exit_outcome(ready, exit_line, returncode)
        if outcome.status in ("failed", "errored"):
            # Forks refused by the process limit do not end a sandbox; a sandbox that failed after some
            # were refused says so.
            breach = pids_breach(rec.limits, self.cgroup)
            if breach is not None:
                return self._breached(breach, exit_code=outcome.fields.get("exit_code"))
        return outcome

    def _exit_outcome(self, ready: bool, exit_line: int | None, returncode: int) -> Outcome:
        rec = self.rec
        if not ready:
            return Outcome(
                "failed",
                "internal_error",
                fields={
                    "error_message": f"the sandbox failed to start (exit status {returncode}); see its log"
                },
            )
        if rec.spec.mode == "service":
            return Outcome("failed", "sandbox_lost", fields={"error_message": "the sandbox's agent exited"})
        code = exit_line if exit_line is not None else (128 - returncode if returncode < 0 else returncode)
        if code != 0:
            return Outcome(
                "errored",
                "exit_non_zero",
                fields={"exit_code": code, "error_message": f"the command exited with code {code}"},
            )
        return Outcome("done", "", commit=True, fields={"exit_code": 0})

    async def _stopped(self, process: SandboxProcess) -> Outcome:
        rec = self.rec
        if rec.stop_request == "finish":
            if await send_shutdown(rec):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(process.exited), self.rt.settings.finish_grace_seconds
                    )
            await process.kill()
            return Outcome("done", "", commit=True, fields={"exit_code": 0})
        await process.kill()
        return Outcome("cancelled", "cancelled_by_user")

    # -- end -----------------------------------------------------------------------------------------------

    async def release(self) -> None:
        """Kill the sandbox's processes, remove its cgroups, close its sockets and unmount its overlays."""
        if self.process is not None:
            await self.process.kill()
            self.process.close()
        if self.cgroup is not None:
            cgroup, self.cgroup = self.cgroup, None
            await self.loop.run_in_executor(None, cgroup.remove)
        for server in self.servers:
            await close_server(server)
        for transport in self.transports:
            transport.close()
        self.rec.close_control()
        if self.run_fd >= 0:
            os.close(self.run_fd)
            self.run_fd = -1
        self.unmount()

    async def remove_files(self) -> None:
        """Remove the sandbox's directories and let go of its shared layers (after `release`)."""
        paths = self.paths
        own = [paths.upper, paths.work, paths.merged, paths.run, self.tmp] + (
            [paths.lower] if self.private_lower else []
        )
        if self.image is not None:
            own += list(self.system.values())
        await self.loop.run_in_executor(None, remove_trees, own)
        if self.lower_tree is not None:
            tree, self.lower_tree = self.lower_tree, None
            await self.rt.lowers.release(tree)
        self.held.close()

    def unmount(self) -> None:
        """Detach the overlay mounted by the server (every sandbox process must be gone)."""
        if self.mounted:
            detach(self.paths.merged)
            self.mounted = False
        if self.system_mounted:
            detach(self.system["merged"])
            self.system_mounted = False

    def stage_and_commit(self) -> Outcome:
        """Stage the upper layer's changes into the session and commit it (blocking: a worker thread)."""
        from tilde.server.storage import Conflict, InvalidArgument, SessionClosed, StorageError, validate_path

        rec = self.rec
        engine = self.rt.engine
        prefix = rec.spec.path_prefix
        changes = collect_changes(self.paths.upper, self.index)
        unstorable = list(changes.ignored)
        writes: list[tuple[str, str, str]] = []
        for rel, host_file in changes.writes:
            try:
                writes.append((rel, host_file, validate_path(prefix + rel)))
            except (InvalidArgument, UnicodeError):
                unstorable.append(rel.encode("utf-8", "backslashreplace").decode("utf-8"))
        if unstorable:
            # Symlinks, devices, or names the repository cannot hold: skipped rather than failing the commit.
            shown = ", ".join(unstorable[:20]) + (" …" if len(unstorable) > 20 else "")
            rec.warnings.append(f"not stored (only regular files with valid object paths are): {shown}")
        try:
            for rel, host_file, path in writes:
                known = self.index.files.get(rel)
                content_type = known.content_type if known else mimetypes.guess_type(rel)[0]
                blob = engine.ingest_file(Path(host_file))
                engine.stage_blob(
                    rec.repo.id, rec.id, path, blob, content_type=content_type or "application/octet-stream"
                )
            for rel in changes.deletes:
                engine.stage_delete(rec.repo.id, rec.id, prefix + rel)
            command = " ".join(self._command()[0] or []) if rec.spec.mode == "one-shot" else "service"
            message = rec.commit_message or f"sandbox {rec.id}: {command}"[:500]
            require_approval = bool(getattr(rec.repo, "agent_commits_require_approval", False)) and (
                rec.actor.type == "agent" or rec.principal.type == "agent"
            )
            outcome = engine.commit_session(
                rec.repo.id,
                rec.id,
                message=message,
                actor=rec.actor,
                metadata={"sandbox_id": rec.id},
                require_approval=require_approval,
            )
        except SessionClosed as error:
            # Code inside may have committed (or rolled back) the sandbox's session itself through the API.
            session = engine.get_session(rec.repo.id, rec.id)
            if session.state in ("committed", "pending_approval"):
                if writes or changes.deletes:
                    rec.warnings.append(
                        "the session was committed from inside; later file changes were dropped"
                    )
                if session.state == "pending_approval":
                    return Outcome("done", "awaiting_approval", fields={"web_url": self.rt.approval_url(rec)})
                if session.commit_id:
                    return Outcome("done", "committed", fields={"commit_id": session.commit_id})
                return Outcome("done", "no_changes")
            text = getattr(error, "message", "") or str(error)
            return Outcome("failed", "commit_failed", fields={"error_message": f"commit failed: {text}"})
        except (Conflict, StorageError) as error:
            self.rollback()
            text = getattr(error, "message", "") or str(error)
            return Outcome("failed", "commit_failed", fields={"error_message": f"commit failed: {text}"})
        if outcome.status == "committed" and outcome.commit is not None:
            self.rt.commit_made(rec, outcome.commit)
            return Outcome("done", "committed", fields={"commit_id": outcome.commit.id})
        if outcome.status == "approval_required":
            return Outcome("done", "awaiting_approval", fields={"web_url": self.rt.approval_url(rec)})
        return Outcome("done", "no_changes")

    def rollback(self) -> None:
        """Discard the session (nothing is committed); a session that is already closed is left alone."""
        from tilde.server.storage import StorageError

        with contextlib.suppress(StorageError):
            self.rt.engine.rollback_session(self.rec.repo.id, self.rec.id)


async def run_sandbox(runtime: SandboxRuntime, record: SandboxRecord) -> None:
    """Run one sandbox to its terminal status (never raises).

    Args:
        runtime: The runtime owning the sandbox.
        record: The sandbox.

    """
    run = _Run(runtime, record)
    try:
        outcome = await run.run()
    except Exception as error:
        logger.exception("sandbox %s failed", record.id)
        outcome = Outcome("failed", "internal_error", fields={"error_message": f"internal error: {error}"})
    try:
        # Every sandbox process is gone by now (the outcome paths kill or wait), so the upper layer is final.
        if run.process is not None:
            await run.process.kill()
        # The upper layer is changed below (files move into the blob store): never while it is mounted.
        run.unmount()
        if outcome.commit:
            committed = await run.loop.run_in_executor(None, run.stage_and_commit)
            committed.fields = {**outcome.fields, **committed.fields}
            outcome = committed
        else:
            await run.loop.run_in_executor(None, run.rollback)
    except Exception as error:
        logger.exception("sandbox %s: finishing failed", record.id)
        await run.loop.run_in_executor(None, run.rollback)
        outcome = Outcome("failed", "internal_error", fields={"error_message": f"internal error: {error}"})
    finally:
        runtime.tokens.revoke_sandbox(record.id)
        try:
            await run.release()
        except Exception:
            logger.exception("sandbox %s: cleanup failed", record.id)
        retired = runtime.retire_oldest(record)
        record.set_status(outcome.status, outcome.reason, **outcome.fields)
        runtime.forget_stop_event(record)
        try:
            save_record(record)
        except OSError:
            logger.exception("sandbox %s: saving its record failed", record.id)
        try:
            await run.remove_files()
        except Exception:
            logger.exception("sandbox %s: cleanup failed", record.id)
        if retired:
            await run.loop.run_in_executor(None, remove_trees, [str(old.directory) for old in retired])
