"""`SandboxRuntime`: creates sandboxes, tracks them, and runs their lifecycles on a private event loop.

The runtime owns one background thread with its own asyncio loop, so sandboxes keep running independently of
the HTTP server's loop and `create` can be called from any thread (request handlers, commit listeners of
triggers).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import hashlib
import logging
import os
import py_compile
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilde.server._private import private_dir
from tilde.server.auth import Principal
from tilde.server.errors import ApiError
from tilde.server.sandbox.bwrap import BwrapNotFound, resolve_bwrap
from tilde.server.sandbox.cgroups import detect as detect_cgroups
from tilde.server.sandbox.isolation import AGENT_DIR, AGENT_SCRIPT
from tilde.server.sandbox.layers import LowerIndex, build_delta, build_lower
from tilde.server.sandbox.lifecycle import run_sandbox
from tilde.server.sandbox.limits import parse_resources
from tilde.server.sandbox.lower_cache import DeltaUnsupported, LowerCache, LowerTree
from tilde.server.sandbox.mounts import detach_stale
from tilde.server.sandbox.persistence import load_records, save_record
from tilde.server.sandbox.record import SandboxRecord
from tilde.server.sandbox.seccomp import SeccompUnavailable, compile_filter
from tilde.server.sandbox.settings import SandboxSettings
from tilde.server.sandbox.spec import parse_spec
from tilde.server.sandbox.tokens import SandboxTokens

if TYPE_CHECKING:
    from tilde.server.cluster.sandboxes import SharedSandboxes

__all__ = ["SandboxRuntime", "compile_agent", "org_principal"]

logger = logging.getLogger("tilde.server.sandbox")

#: Commits changing more objects than this get a full tree rather than a delta layer.
_MAX_DELTA = 5000


def compile_agent(directory: Path) -> str | None:
    """Compile the in-sandbox agent for this interpreter once, into ``directory``; return the ``.pyc`` path.

    Every sandbox starts the agent, and compiling its source took about as long as the rest of its start-up;
    bubblewrap binds the compiled file instead. The name carries a digest of the source and the interpreter's
    version, so an upgrade compiles afresh, and files of other versions are removed. None when it cannot be
    written (the agent then runs from its source, as before).
    """
    source = Path(AGENT_SCRIPT).read_bytes()
    digest = hashlib.sha256(source + sys.version.encode()).hexdigest()[:16]
    target = directory / f"agent-{digest}.pyc"
    try:
        private_dir(directory)
        if not target.is_file():
            partial = directory / f".agent-{digest}.{os.getpid()}.tmp"
            py_compile.compile(
                AGENT_SCRIPT,
                cfile=str(partial),
                dfile=AGENT_DIR + "/agent.py",
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
            os.chmod(partial, 0o600)  # like every file in the data directory (the sandbox runs as its owner)
            os.replace(partial, target)
        for old in directory.iterdir():
            if old != target:
                with contextlib.suppress(OSError):
                    old.unlink()
    except (OSError, py_compile.PyCompileError):
        logger.warning("could not compile the sandbox agent; it runs from its source", exc_info=True)
        return None
    return str(target)


def org_principal(registry: Any, run_as: Mapping[str, str], org_id: str) -> Principal | None:
    """Return the agent or role ``run_as`` (``{"type", "id"}``) names; None unless it is in ``org_id``."""
    kind = run_as["type"]
    found = (registry.get_agent_by_id if kind == "agent" else registry.get_role_by_id)(run_as["id"])
    if found is None or found.organization_id != org_id:
        return None
    return Principal(kind, found.id, found.name, found.organization_id)


class SandboxRuntime:
    """The bubblewrap sandbox runtime (``app.state.runtime``).

    Args:
        config: The server configuration (``data_dir``, ``public_url``, ``approval_web_url``, ``sandbox``).
        engine: The storage engine.
        app_state: ``app.state`` (registry, commit listeners); may be None in tests of the runtime alone.
        settings: Runtime settings; default: read from ``config.sandbox``.

    """

    def __init__(
        self, config: Any, engine: Any, app_state: Any = None, settings: SandboxSettings | None = None
    ):
        self.config = config
        self.engine = engine
        self.app_state = app_state
        self.settings = settings or SandboxSettings.from_mapping(getattr(config, "sandbox", None))
        self.root = Path(config.data_dir) / "sandboxes"
        private_dir(self.root)
        self.tokens = SandboxTokens(self.settings.token_ttl_seconds)
        #: Whether the server mounts overlays itself (root); cleared after the first EPERM.
        self.direct_mounts = os.geteuid() == 0 and self.settings.mount_mode == "auto"
        #: Whether commits may become thin lower layers (they need whiteouts: character devices 0/0, which
        #: unprivileged users may create since Linux 5.8); cleared after the first EPERM.
        self.whiteouts = True
        #: The bubblewrap executable (resolved by every `create`, so a fixed installation takes effect).
        self.bwrap = ""
        if os.geteuid() == 0:
            detach_stale(self.root)
        #: The cgroups sandboxes get (none: per-process rlimits only); leftovers of a crash are removed.
        self.cgroups = detect_cgroups(config.data_dir, enabled=self.settings.cgroups)
        swept = self.cgroups.sweep()
        logger.info(
            "sandbox limits: %s%s", self.cgroups.describe(), f" ({swept} stale removed)" if swept else ""
        )
        self.lowers = LowerCache(self.root / ".lower", capacity=self.settings.shared_lower_trees)
        #: The agent compiled for this interpreter (None: sandboxes run it from its source).
        self.agent_code = compile_agent(self.root / ".agent")
        self._records: dict[str, SandboxRecord] = {}
        self._by_repo: dict[str, list[str]] = {}
        registry = getattr(app_state, "registry", None)
        loaded = load_records(self.root, registry, engine, self.settings.retained_sandboxes)
        for old in loaded:
            self._records[old.id] = old
            self._by_repo.setdefault(old.repo.id, []).append(old.id)
        #: The cluster's shared sandbox table (None on a server alone: everything lives here).
        self.shared: SharedSandboxes | None = None
        cluster = getattr(app_state, "cluster", None)
        if cluster is not None and cluster.enabled:
            from tilde.server.cluster.sandboxes import SharedSandboxes

            self.shared = SharedSandboxes(cluster, engine)
            for old, final in self.shared.adopt(loaded):
                old.take_final(final)
                with contextlib.suppress(OSError):
                    save_record(old)
            for old in loaded:
                old.on_change = self._share
        self._stop_events: dict[str, asyncio.Event] = {}
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._server_address: tuple[str, int] | None = None
        self._closed = False
        self._warming: set[str] = set()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="tilde-sandbox-runtime", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    # -- creation -----------------------------------------------------------------------------------------

    def create(self, *, org_name: str, repo: Any, principal: Any, spec: dict[str, Any]) -> str:
        """Validate a CreateSandbox body, open its session and start the sandbox.

        Callable from any thread; returns at once (the sandbox starts in the background).

        Args:
            org_name: The repository's organization name.
            repo: The repository record (``id``, ``name``, ``session_max_duration_days``, ...).
            principal: Who creates the sandbox.
            spec: The CreateSandbox JSON body (CONTRACT §6.1, plus ``network``).

        Returns:
            The sandbox id, which is also its session id.

        Raises:
            ApiError: 400 for an invalid body, 503 when the runtime is disabled or closed.

        """
        if not self.settings.enabled or self._closed:
            raise ApiError(503, "runtime_unavailable", "the sandbox runtime is not available on this server")
        try:
            self.bwrap = resolve_bwrap(self.settings.bwrap)
        except BwrapNotFound as error:
            raise ApiError(503, "runtime_unavailable", str(error)) from None
        days = getattr(repo, "session_max_duration_days", None)
        ceiling = self.settings.max_timeout_seconds
        requested = spec.get("timeout_seconds") if isinstance(spec, Mapping) else None
        if ceiling is not None and isinstance(requested, (int, float)) and requested > ceiling:
            raise ApiError(
                400,
                "invalid_sandbox",
                f"timeout_seconds ({requested}) exceeds this server's ceiling ({ceiling})",
            )
        parsed = parse_spec(
            spec,
            default_timeout=min(
                self.settings.default_timeout_seconds, ceiling or self.settings.default_timeout_seconds
            ),
            max_timeout=days * 86400 if days else None,
            default_image=self.settings.default_image,
        )
        limits = parse_resources(spec.get("resources") if isinstance(spec, Mapping) else None, self.settings)
        actor = self._run_as(repo, principal, parsed.run_as)
        if parsed.network or (parsed.egress is not None and parsed.egress.allow):
            # An allow-list reaches the network as far as `network: true` does (`*` allows every host).
            self._authorize(principal, "UseSandboxNetwork", repo)
        if self.settings.seccomp:
            try:
                compile_filter()
            except SeccompUnavailable as error:
                raise ApiError(503, "runtime_unavailable", str(error)) from None
        session = self.engine.create_session(repo.id, actor)
        record = SandboxRecord(
            id=session.id,
            org_name=org_name,
            repo=repo,
            principal=principal,
            actor=actor,
            spec=parsed,
            directory=self.root / session.id,
            limits=limits,
        )
        record.directory.mkdir(parents=True, exist_ok=True)
        save_record(record)
        if self.shared is not None:
            # Shared before its id is returned: the next request, on any node, finds it.
            self.shared.share(record)
            record.on_change = self._share
        record.log_path.touch()
        record.network_log_path.touch()
        with self._lock:
            self._records[record.id] = record
            self._by_repo.setdefault(repo.id, []).append(record.id)
        self._futures[record.id] = asyncio.run_coroutine_threadsafe(self._start(record), self.loop)
        return record.id

    async def _start(self, record: SandboxRecord) -> None:
        self.stop_event(record)
        try:
            await run_sandbox(self, record)
        finally:
            self._futures.pop(record.id, None)

    def retire_oldest(self, ending: SandboxRecord) -> list[SandboxRecord]:
        """Forget the oldest finished sandboxes beyond ``retained_sandboxes``, ``ending`` counted as finished.

        The lifecycle calls it just before ``ending`` gets its terminal status, so a client that sees that
        status never sees more finished sandboxes than are retained. Returns the forgotten records, whose
        directories (and logs) the caller removes.
        """
        with self._lock:
            finished = [r for r in self._records.values() if r.is_terminal or r is ending]
            excess = finished[: max(0, len(finished) - self.settings.retained_sandboxes)]
            for record in excess:
                del self._records[record.id]
                self._by_repo[record.repo.id].remove(record.id)
        if excess and self.shared is not None:
            try:
                self.shared.forget(excess)
            except Exception:
                logger.exception("forgetting retired sandboxes in the cluster's table failed")
        return excess

    def _share(self, record: SandboxRecord) -> None:
        """Write a status change through to the cluster's table (a record's ``on_change``).

        When the table says the sandbox ended already (this node was declared lost while it could not renew
        its lease, and its session was rolled back), the sandbox is cancelled here too and its record takes
        the table's final status.
        """
        assert self.shared is not None
        final = self.shared.share(record)
        if final is None:
            # Kept current on disk too, so a restart after a crash reloads what the cluster showed.
            with contextlib.suppress(OSError):
                save_record(record)
            return
        if not record.is_terminal:
            logger.warning("sandbox %s was declared lost by the cluster; cancelling it", record.id)
            with contextlib.suppress(ApiError):
                self.cancel(record)
        record.take_final(final)

    def _authorize(self, principal: Any, action: str, repo: Any) -> None:
        """Check a further action of the creator on the repository (403 `ApiError` when refused)."""
        registry = getattr(self.app_state, "registry", None)
        auth = getattr(self.app_state, "auth", None)
        org = registry.get_org_by_id(repo.organization_id) if registry is not None else None
        if auth is not None and org is not None:
            auth.authorize(principal, action, org, repo)

    def _run_as(self, repo: Any, principal: Any, run_as: dict[str, str] | None) -> Any:
        """Return whom a sandbox acts as: the ``run_as`` agent or role of the organization, or the caller."""
        if run_as is None:
            return principal
        registry = getattr(self.app_state, "registry", None)
        found = org_principal(registry, run_as, repo.organization_id) if registry is not None else None
        if found is None:
            raise ApiError(
                400, "invalid_sandbox", f"run_as: no {run_as['type']} {run_as['id']} in this organization"
            )
        # The caller must be allowed to act as that agent or role; the sandbox then has its rights only.
        auth = getattr(self.app_state, "auth", None)
        org = registry.get_org_by_id(repo.organization_id) if registry is not None else None
        if auth is not None and org is not None:
            auth.authorize(principal, "RunAs", org, None, **{found.type: found.name})
        return found

    # -- lookups ------------------------------------------------------------------------------------------

    def local(self, repo_id: str, sandbox_id: str) -> SandboxRecord | None:
        """Return the sandbox ``sandbox_id`` of a repository if this node runs (or ran) it, else None."""
        with self._lock:
            record = self._records.get(sandbox_id)
        return record if record is not None and record.repo.id == repo_id else None

    def get(self, repo_id: str, sandbox_id: str) -> SandboxRecord:
        """Return the sandbox ``sandbox_id`` of a repository (404 `ApiError` otherwise).

        In a cluster, a sandbox another node runs comes back as a `RemoteSandbox` read from the shared table
        (a database query: call it from a worker thread).
        """
        record = self.local(repo_id, sandbox_id)
        if record is None and self.shared is not None:
            record = self.shared.get(repo_id, sandbox_id)
        if record is None:
            raise ApiError(404, "not_found", f"sandbox {sandbox_id} not found")
        return record

    def list(self, repo_id: str, after: str, limit: int) -> tuple[list[SandboxRecord], bool]:
        """Return a page of a repository's sandboxes in creation order (``after``: exclusive id cursor).

        In a cluster the page comes from the shared table (every node's sandboxes, ordered by creation time
        and id; a database query: call it from a worker thread).
        """
        if self.shared is not None:
            with self._lock:
                local = dict(self._records)
            return self.shared.page(repo_id, after, limit, local)
        with self._lock:
            ids = list(self._by_repo.get(repo_id, []))
            start = ids.index(after) + 1 if after in ids else 0
            page = [self._records[i] for i in ids[start : start + limit]]
        return page, start + limit < len(ids)

    # -- control ------------------------------------------------------------------------------------------

    def cancel(self, record: SandboxRecord) -> None:
        """Abort a sandbox and discard its changes (409 when it already ended)."""
        self._request_stop(record, "cancel")

    def finish(self, record: SandboxRecord, message: str | None = None) -> None:
        """Stop a service sandbox gracefully and commit its changes (400 unless service; 409 when ended).

        Args:
            record: The sandbox.
            message: The commit's message; None lets the runtime name it after the sandbox.

        """
        if record.spec.mode != "service":
            raise ApiError(400, "invalid_mode", "only service sandboxes can be finished")
        if message is not None:
            record.commit_message = message
        self._request_stop(record, "finish")

    def _request_stop(self, record: SandboxRecord, kind: str) -> None:
        with self._lock:
            if record.is_terminal or record.stop_request is not None:
                raise ApiError(
                    409, "conflict", f"sandbox {record.id} is already {record.status or 'stopping'}"
                )
            record.stop_request = kind
        self.loop.call_soon_threadsafe(self._set_stop, record.id)

    def _set_stop(self, sandbox_id: str) -> None:
        event = self._stop_events.get(sandbox_id)
        if event is not None:
            event.set()

    def stop_event(self, record: SandboxRecord) -> asyncio.Event:
        """Return the runtime-loop event set when a stop is requested (created on first use)."""
        event = self._stop_events.setdefault(record.id, asyncio.Event())
        if record.stop_request is not None:
            event.set()
        return event

    def forget_stop_event(self, record: SandboxRecord) -> None:
        """Drop a finished sandbox's stop event."""
        self._stop_events.pop(record.id, None)

    # -- seams used by the lifecycle ----------------------------------------------------------------------

    def note_server_address(self, address: tuple[str, int] | None) -> None:
        """Remember the server's own listening address (learned from incoming requests)."""
        if address and self._server_address is None:
            host, port = address[0], int(address[1])
            self._server_address = ("127.0.0.1" if host in ("0.0.0.0", "", "::") else host, port)

    def server_address(self) -> tuple[str, int] | None:
        """Where the API relay connects: the learned address, else the configured host and port."""
        if self._server_address is not None:
            return self._server_address
        port = int(getattr(self.config, "port", 0) or 0)
        if port:
            host = str(getattr(self.config, "host", "127.0.0.1"))
            return ("127.0.0.1" if host in ("0.0.0.0", "", "::") else host, port)
        return None

    def public_base(self) -> str:
        """Return the server's externally visible base URL."""
        configured = getattr(self.config, "public_url", None)
        if configured:
            return str(configured).rstrip("/")
        address = self.server_address()
        return f"http://{address[0]}:{address[1]}" if address else ""

    def approval_url(self, record: SandboxRecord) -> str:
        """Return the web link of a sandbox commit waiting for approval."""
        template = getattr(self.config, "approval_web_url", "{base}/{org}/{repo}/approve/{session_id}")
        return str(template).format(
            base=self.public_base(), org=record.org_name, repo=record.repo.name, session_id=record.id
        )

    def secret_env(self, record: SandboxRecord) -> dict[str, str]:
        """Repository secrets, then the run-as agent's secrets, as environment variables (when stored)."""
        provider: Callable[..., dict[str, str]] | None = getattr(self.app_state, "sandbox_secret_env", None)
        if provider is None:
            return {}
        try:
            return dict(provider(record.repo, record.actor))
        except Exception:
            logger.exception("sandbox %s: reading secrets failed", record.id)
            return {}

    def commit_made(self, record: SandboxRecord, commit: Any) -> None:
        """Tell the commit listeners (triggers) about a commit the runtime made."""
        if self.app_state is None:
            return
        from tilde.server.api.common import notify_commit

        notify_commit(self.app_state, record.org_name, record.repo, commit)

    # -- warm lower trees --------------------------------------------------------------------------------

    def on_commit(self, org_name: str, repo: Any, commit: Any) -> None:
        """Commit listener: prepare the new head's lower tree for repositories that run sandboxes.

        The tree is built in the background, so the next sandbox (often one started by a trigger on this very
        commit) finds it ready instead of linking every file first.
        """
        if self._closed:
            return
        self.loop.call_soon_threadsafe(self._schedule_warm, repo)

    def _schedule_warm(self, repo: Any) -> None:
        prefixes = self.lowers.prefixes(repo.id)
        if not prefixes or repo.id in self._warming:
            return
        self._warming.add(repo.id)
        task = self.loop.create_task(self._warm(repo, prefixes))
        task.add_done_callback(lambda _: self._warming.discard(repo.id))

    async def _warm(self, repo: Any, prefixes: set[str]) -> None:
        from tilde.server.storage import Actor, StorageError

        loop = asyncio.get_running_loop()
        actor = Actor("user", "tilde-sandbox-runtime", "sandbox runtime")
        try:
            session = await loop.run_in_executor(None, self.engine.create_session, repo.id, actor)
        except StorageError:
            return
        try:
            for prefix in sorted(prefixes):
                key = (repo.id, session.base_commit_id, prefix)
                if key in self.lowers:
                    continue

                def build(directory: str, prefix: str = prefix) -> LowerIndex:
                    return build_lower(
                        self.engine.session_view(repo.id, session.id, prefix), prefix, directory
                    )

                tree, _ = await self.acquire_lower(key, build)
                await self.lowers.release(tree)
        except Exception:
            logger.exception("preparing a lower tree for repository %s failed", repo.id)
        finally:
            with contextlib.suppress(StorageError):
                await loop.run_in_executor(None, self.engine.rollback_session, repo.id, session.id)

    async def acquire_lower(
        self, key: tuple[str, str | None, str], build: Callable[[str], LowerIndex]
    ) -> tuple[LowerTree, LowerIndex]:
        """Return the shared lower tree of ``key``, stacked on its parent commit's tree when possible.

        Args:
            key: ``(repo_id, base_commit_id, path_prefix)``.
            build: Builds the whole tree into a directory (from a session view of that commit).

        Returns:
            The tree (release it with ``self.lowers.release``) and its index.

        """
        repo_id, commit_id, prefix = key
        parent_key = None
        delta = None
        if self.whiteouts and commit_id is not None and key not in self.lowers:
            loop = asyncio.get_running_loop()
            commit = await loop.run_in_executor(None, self.engine.get_commit, repo_id, commit_id)
            if commit.parent_id is not None:
                parent_key = (repo_id, commit.parent_id, prefix)
                delta = functools.partial(self._build_delta, repo_id, commit.parent_id, commit_id, prefix)
        return await self.lowers.acquire(key, build, parent_key=parent_key, delta=delta)

    def _build_delta(
        self, repo_id: str, parent_id: str, commit_id: str, prefix: str, directory: str, parent: LowerIndex
    ) -> LowerIndex:
        items: list[Any] = []
        after = ""
        while True:
            page = self.engine.diff(
                repo_id, left=parent_id, right=commit_id, prefix=prefix, after=after, limit=1000
            )
            items.extend(page.items)
            if len(items) > _MAX_DELTA:
                raise DeltaUnsupported("too many changes for a delta layer")
            if not page.has_more or not page.next_cursor:
                break
            after = page.next_cursor
        try:
            return build_delta(items, prefix, directory, parent, self.engine.blob_path)
        except PermissionError as error:
            # A kernel that refuses unprivileged whiteouts: build whole trees from now on.
            self.whiteouts = False
            raise DeltaUnsupported("whiteouts cannot be created here") from error

    # -- shutdown -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel every running sandbox, wait for their cleanup, and stop the loop (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            running = [r for r in self._records.values() if not r.is_terminal]
        for record in running:
            try:
                self._request_stop(record, "cancel")
            except ApiError:
                pass
        for future in list(self._futures.values()):
            try:
                future.result(timeout=30)
            except Exception:
                logger.exception("sandbox shutdown failed")
        try:
            asyncio.run_coroutine_threadsafe(self._cancel_tasks(), self.loop).result(timeout=30)
        except Exception:
            logger.exception("stopping the sandbox runtime's tasks failed")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if self.shared is not None:
            self.shared.close()
        self.cgroups.close()
        if not self.loop.is_running():
            self.loop.close()
        atexit.unregister(self.close)

    async def _cancel_tasks(self) -> None:
        """Cancel what still runs on the runtime loop (tree preparations) and wait for it to unwind."""
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_default_executor()

    async def aclose(self) -> None:
        """`close` from an event loop (the application's shutdown), without blocking that loop."""
        await asyncio.to_thread(self.close)
