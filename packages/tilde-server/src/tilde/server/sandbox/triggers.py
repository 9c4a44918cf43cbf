"""Sandbox triggers: their store, and the commit listener that starts sandboxes for them.

Triggers and their runs live in their own SQLite file (``data_dir/triggers.sqlite3``). `install` opens it,
puts the store on ``app.state.trigger_store`` and appends `TriggerDispatcher.on_commit` to
``app.state.commit_listeners``, so every commit (session commit, approval, revert, sandbox) is evaluated:

1. The commit's changes are read from the engine's diff against its parent (``added``, ``modified``,
   ``removed``; a condition's ``diff_type`` ``changed`` matches ``modified``).
2. Each enabled trigger of the repository with a matching condition (any of them) gets a run: ``created``
   with the id of a one-shot sandbox started through ``app.state.runtime.create`` as the trigger's creator
   (or its ``run_as`` principal), ``skipped`` or ``failed`` with a machine-readable ``reason``. Triggers
   that match nothing record nothing.

Loop guard: every run records its *lineage*, the ids of the triggers whose sandboxes led to the commit it
reacted to, plus its own. When a commit is evaluated, the dispatcher first learns which trigger sandbox (if
any) made it: a sandbox's id is its session id, and the engine's session record names the commit it produced.
Runs whose sandbox session has closed are settled with that commit id, so each run is looked up only while
its sandbox is open. A commit made by a trigger sandbox inherits that run's lineage, and a trigger already in
the lineage is skipped with reason ``trigger_loop``: a trigger never fires on its own output, directly or
through other triggers, so chains always end. Commits are evaluated one at a time per repository (a lock),
so a sandbox that commits quickly cannot be evaluated before its run's sandbox id is recorded.

Replicas of a cluster (the store on PostgreSQL) evaluate each commit exactly once between them. The committing
replica records the commit in the durable ``trigger_queue`` before its request is answered (`record_commit`,
in ``app.state.commit_journal``), with a ``NOTIFY`` on `QUEUE_CHANNEL` in the same transaction. Only replicas
that run sandboxes evaluate (an API-only replica could not start the sandboxes): the committing replica drains
the repository's queue itself when it runs sandboxes, and every sandbox replica drains it on the notification
(`TriggerDispatcher.drain`). Each evaluation runs in a transaction that holds the repository's advisory lock
(one evaluation at a time per repository, cluster-wide, as the lineage logic needs) and the oldest queued row
(``FOR UPDATE SKIP LOCKED``), and deletes that row when done. Rows a dead replica left, or whose notification
was lost, are picked up by every sandbox replica's sweep (`TriggerDispatcher.SWEEP_INTERVAL`); a trigger that
already has a run for the commit is not fired again (a run still ``pending`` there is failed with reason
``evaluator_lost``), so a re-evaluation never doubles a run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.applications import Starlette
from starlette.datastructures import State

from tilde.server._db import Connection, DatabaseUnavailable, Location, Migration, SqliteStore
from tilde.server._ids import new_id, utc_now
from tilde.server.auth import Authenticator, Principal
from tilde.server.errors import ApiError
from tilde.server.registry import Registry, RepoRecord
from tilde.server.sandbox.runtime import org_principal
from tilde.server.storage import CommitInfo, NotFound, StorageEngine

__all__ = [
    "TriggerDispatcher",
    "TriggerRecord",
    "TriggerRunRecord",
    "TriggerStore",
    "install",
    "match_changes",
]

if TYPE_CHECKING:
    from tilde.server.cluster.notify import Listener, Subscription

logger = logging.getLogger("tilde.server.triggers")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS triggers (
    id TEXT PRIMARY KEY,
    repo_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    conditions TEXT NOT NULL,
    sandbox_config TEXT NOT NULL,
    run_as TEXT,
    created_by_type TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_by_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS triggers_by_repo ON triggers (repo_id);
CREATE TABLE IF NOT EXISTS trigger_runs (
    id TEXT PRIMARY KEY,
    repo_id TEXT NOT NULL,
    trigger_id TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    error_message TEXT NOT NULL,
    sandbox_id TEXT,
    matched_paths TEXT NOT NULL,
    lineage TEXT NOT NULL,
    sandbox_commit_id TEXT,
    settled INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trigger_runs_by_trigger ON trigger_runs (trigger_id);
CREATE INDEX IF NOT EXISTS trigger_runs_open ON trigger_runs (repo_id, settled);
CREATE INDEX IF NOT EXISTS trigger_runs_by_result ON trigger_runs (repo_id, sandbox_commit_id);
"""

#: The channel on which a queued commit's repository id is announced (cluster only).
QUEUE_CHANNEL = "tilde_trigger_queue"
#: At most this many matched paths are kept per run (a huge commit must not make a huge row).
MAX_MATCHED_PATHS = 1000
#: Engine diff page size while reading a commit's changes.
_DIFF_PAGE = 1000
#: Diff statuses as a condition's ``diff_type`` names them.
_DIFF_KIND = {"added": "added", "removed": "removed", "modified": "changed"}


@dataclass(frozen=True)
class TriggerRecord:
    """A stored trigger; ``conditions`` and ``sandbox_config`` are the validated, normalised JSON values.

    ``seq`` is its position in insertion order (the list cursor); 0 when read without it.
    """

    id: str
    repo_id: str
    name: str
    description: str
    enabled: bool
    conditions: list[dict[str, str]]
    sandbox_config: dict[str, Any]
    run_as: dict[str, str] | None
    created_by_type: str
    created_by: str
    created_by_name: str
    created_at: str
    updated_at: str
    seq: int = 0


@dataclass(frozen=True)
class TriggerRunRecord:
    """A stored run of a trigger against one commit (``seq`` as for `TriggerRecord`)."""

    id: str
    repo_id: str
    trigger_id: str
    commit_id: str
    status: str
    reason: str
    error_message: str
    sandbox_id: str | None
    matched_paths: list[str]
    lineage: list[str]
    created_at: str
    updated_at: str
    seq: int = 0


_JSON_COLUMNS = frozenset({"conditions", "sandbox_config", "run_as", "matched_paths", "lineage"})
Record = TypeVar("Record", "TriggerRecord", "TriggerRunRecord")


def _record(cls: type[Record], row: sqlite3.Row) -> Record:
    """Build a record from the row's columns of the same names (JSON columns decoded)."""
    values: dict[str, Any] = {}
    columns = row.keys()
    for item in dataclasses.fields(cls):
        if item.name not in columns:
            continue
        value = row[item.name]
        values[item.name] = json.loads(value) if item.name in _JSON_COLUMNS and value is not None else value
    if "enabled" in values:
        values["enabled"] = bool(values["enabled"])
    return cls(**values)


def _cursor(after: str, default: int) -> int:
    """Decode a list cursor: the position (SQLite rowid, in insertion order) of the last item seen."""
    if not after:
        return default
    # ASCII digits only ("²".isdigit() is true), and no more than a SQLite integer holds.
    if not (after.isascii() and after.isdigit()) or len(after) > 19 or int(after) > 2**63 - 1:
        raise ApiError(400, "invalid_parameter", f"invalid cursor: {after[:40]!r}")
    return int(after)


def _not_found(trigger_id: str) -> ApiError:
    return ApiError(404, "not_found", f"sandbox trigger {trigger_id!r} not found")


def _insertion_order(db: Connection, dialect: str) -> None:
    """Give PostgreSQL's tables the ``rowid`` SQLite has implicitly (lists and cursors follow it)."""
    if dialect == "postgres":
        for table in ("triggers", "trigger_runs"):
            db.execute(
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS rowid BIGINT GENERATED ALWAYS AS IDENTITY"
            )


def _queue(db: Connection, dialect: str) -> None:
    """Give PostgreSQL the queue of commits waiting for evaluation (a single server needs none)."""
    if dialect == "postgres":
        db.execute(
            "CREATE TABLE IF NOT EXISTS trigger_queue (repo_id TEXT NOT NULL, commit_id TEXT NOT NULL,"
            " commit_seq BIGINT NOT NULL, org_name TEXT NOT NULL, enqueued_us BIGINT NOT NULL,"
            " PRIMARY KEY (repo_id, commit_id))"
        )


#: The trigger store's schema history.
TRIGGER_MIGRATIONS = (
    Migration(1, "triggers and their runs", _SCHEMA),
    Migration(2, "insertion order on PostgreSQL", _insertion_order),
    Migration(3, "the queue of commits to evaluate, on PostgreSQL", _queue),
)


@dataclass(frozen=True)
class QueuedCommit:
    """A commit waiting in ``trigger_queue`` for its trigger evaluation."""

    repo_id: str
    commit_id: str
    commit_seq: int
    org_name: str


class TriggerStore(SqliteStore):
    """Triggers and their runs, in one SQLite file; every method is safe to call from any thread.

    Lists follow insertion order (SQLite's rowid), which is also what their cursors hold.

    Args:
        path: The database file.

    """

    def __init__(self, path: Location) -> None:
        super().__init__(path, migrations=TRIGGER_MIGRATIONS, component="triggers")

    def create(self, repo_id: str, fields: Mapping[str, Any], creator: Principal) -> TriggerRecord:
        """Store a new trigger.

        Args:
            repo_id: The repository.
            fields: Validated ``name``, ``description``, ``enabled``, ``conditions``, ``sandbox_config``,
                ``run_as``.
            creator: Who creates it (the principal its sandboxes run as, unless ``run_as`` says otherwise).

        """
        now = utc_now()
        trigger_id = new_id()
        with self._tx() as db:
            db.execute(
                "INSERT INTO triggers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    trigger_id,
                    repo_id,
                    fields["name"],
                    fields.get("description", ""),
                    int(bool(fields.get("enabled", True))),
                    json.dumps(fields["conditions"]),
                    json.dumps(fields["sandbox_config"]),
                    json.dumps(fields["run_as"]) if fields.get("run_as") else None,
                    creator.type,
                    creator.id,
                    creator.name,
                    now,
                    now,
                ),
            )
        return self.get(repo_id, trigger_id)

    def get(self, repo_id: str, trigger_id: str) -> TriggerRecord:
        """Return a trigger of the repository (404 `ApiError` when there is none)."""
        row = self._one("SELECT * FROM triggers WHERE id = ? AND repo_id = ?", trigger_id, repo_id)
        if row is None:
            raise _not_found(trigger_id)
        return _record(TriggerRecord, row)

    def list_triggers(self, repo_id: str, after: str, limit: int) -> tuple[list[TriggerRecord], bool]:
        """Return up to ``limit`` triggers after the cursor, oldest first, and whether more follow."""
        page, has_more = self._page(
            "SELECT rowid AS seq, * FROM triggers WHERE repo_id = ? AND rowid > ? ORDER BY rowid LIMIT ?",
            repo_id,
            _cursor(after, 0),
            limit=limit,
        )
        return [_record(TriggerRecord, row) for row in page], has_more

    def enabled(self, repo_id: str) -> list[TriggerRecord]:
        """Return the repository's enabled triggers."""
        rows = self._all("SELECT * FROM triggers WHERE repo_id = ? AND enabled = 1 ORDER BY rowid", repo_id)
        return [_record(TriggerRecord, row) for row in rows]

    def update(self, repo_id: str, trigger_id: str, changes: Mapping[str, Any]) -> TriggerRecord:
        """Apply validated changes (any of the create fields) and return the updated trigger."""
        columns: dict[str, Callable[[Any], Any]] = {
            "name": lambda v: v,
            "description": lambda v: v,
            "enabled": lambda v: int(bool(v)),
            "conditions": json.dumps,
            "sandbox_config": json.dumps,
            "run_as": lambda v: json.dumps(v) if v else None,
        }
        assignments = [(name, convert(changes[name])) for name, convert in columns.items() if name in changes]
        with self._tx() as db:
            if (
                db.execute(
                    "SELECT 1 FROM triggers WHERE id = ? AND repo_id = ?", (trigger_id, repo_id)
                ).fetchone()
                is None
            ):
                raise _not_found(trigger_id)
            sets = ", ".join(f"{name} = ?" for name, _ in assignments)
            db.execute(
                f"UPDATE triggers SET {sets + ', ' if sets else ''}updated_at = ? WHERE id = ?",
                (*[value for _, value in assignments], utc_now(), trigger_id),
            )
        return self.get(repo_id, trigger_id)

    def delete(self, repo_id: str, trigger_id: str) -> None:
        """Delete a trigger and its run history (404 `ApiError` when there is none)."""
        with self._tx() as db:
            deleted = db.execute("DELETE FROM triggers WHERE id = ? AND repo_id = ?", (trigger_id, repo_id))
            if deleted.rowcount == 0:
                raise _not_found(trigger_id)
            db.execute("DELETE FROM trigger_runs WHERE trigger_id = ?", (trigger_id,))

    def list_runs(
        self, repo_id: str, trigger_id: str, after: str, limit: int
    ) -> tuple[list[TriggerRunRecord], bool]:
        """Return up to ``limit`` runs of a trigger, newest first, after the cursor."""
        self.get(repo_id, trigger_id)
        page, has_more = self._page(
            "SELECT rowid AS seq, * FROM trigger_runs WHERE trigger_id = ? AND rowid < ?"
            " ORDER BY rowid DESC LIMIT ?",
            trigger_id,
            _cursor(after, 2**63 - 1),
            limit=limit,
        )
        return [_record(TriggerRunRecord, row) for row in page], has_more

    def add_run(
        self,
        trigger: TriggerRecord,
        commit_id: str,
        status: str,
        *,
        matched_paths: Sequence[str],
        lineage: Sequence[str],
        reason: str = "",
        error_message: str = "",
    ) -> str:
        """Record a run and return its id; runs without a sandbox are settled from the start."""
        run_id = new_id()
        now = utc_now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO trigger_runs VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, NULL, ?, ?, ?)",
                (
                    run_id,
                    trigger.repo_id,
                    trigger.id,
                    commit_id,
                    status,
                    reason,
                    error_message,
                    json.dumps(list(matched_paths)[:MAX_MATCHED_PATHS]),
                    json.dumps(list(lineage)),
                    int(status != "pending"),
                    now,
                    now,
                ),
            )
        return run_id

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        sandbox_id: str | None = None,
        reason: str = "",
        error_message: str = "",
    ) -> None:
        """Move a pending run to ``created`` (with its sandbox) or ``failed``."""
        with self._tx() as db:
            db.execute(
                "UPDATE trigger_runs SET status = ?, sandbox_id = ?, reason = ?, error_message = ?,"
                " settled = ?, updated_at = ? WHERE id = ?",
                (status, sandbox_id, reason, error_message, int(sandbox_id is None), utc_now(), run_id),
            )

    def open_sandbox_runs(self, repo_id: str) -> list[tuple[str, str]]:
        """Return ``(run id, sandbox id)`` of the runs whose sandbox's outcome is not known yet."""
        rows = self._all(
            "SELECT id, sandbox_id FROM trigger_runs"
            " WHERE repo_id = ? AND settled = 0 AND sandbox_id IS NOT NULL",
            repo_id,
        )
        return [(row["id"], row["sandbox_id"]) for row in rows]

    def settle(self, run_id: str, sandbox_commit_id: str | None) -> None:
        """Record the commit a run's sandbox produced (None: it produced none) and stop watching it."""
        with self._tx() as db:
            db.execute(
                "UPDATE trigger_runs SET sandbox_commit_id = ?, settled = 1 WHERE id = ?",
                (sandbox_commit_id, run_id),
            )

    def run_status(self, trigger_id: str, commit_id: str) -> tuple[str, str] | None:
        """Return ``(run id, status)`` of the trigger's run for a commit, or None when it has none."""
        row = self._one(
            "SELECT id, status FROM trigger_runs WHERE trigger_id = ? AND commit_id = ?",
            trigger_id,
            commit_id,
        )
        return (str(row["id"]), str(row["status"])) if row is not None else None

    # -- the queue of commits to evaluate (PostgreSQL only) --------------------------------------------

    def enqueue(self, org_name: str, repo_id: str, commit_id: str, commit_seq: int) -> bool:
        """Queue a commit for evaluation when its repository has an enabled trigger; return whether queued."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO trigger_queue (repo_id, commit_id, commit_seq, org_name, enqueued_us)"
                " SELECT ?, ?, ?, ?, ? WHERE EXISTS"
                " (SELECT 1 FROM triggers WHERE repo_id = ? AND enabled = 1)",
                (repo_id, commit_id, commit_seq, org_name, int(time.time() * 1_000_000), repo_id),
            )
            queued = cur.rowcount > 0
            if queued:
                from tilde.server.cluster.notify import notify_in  # PostgreSQL only (psycopg)

                notify_in(db, QUEUE_CHANNEL, repo_id)
            return queued

    @contextmanager
    def claim(self, repo_id: str, *, wait: bool) -> Iterator[QueuedCommit | None]:
        """Claim the repository's oldest queued commit for the block; it leaves the queue when the block ends.

        The claim holds the repository's advisory lock (evaluations of one repository never overlap across
        the cluster) and the row's lock. An exception in the block leaves the row for a later attempt.

        Args:
            repo_id: The repository.
            wait: Wait for another replica's evaluation of the repository to end; False yields None at once
                when one is in progress (the sweep comes back later).

        """
        with self._tx() as db:
            key = ("tilde-triggers:" + repo_id,)
            if wait:
                db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", key)
            elif not db.execute("SELECT pg_try_advisory_xact_lock(hashtext(?))", key).fetchone()[0]:
                yield None
                return
            row = db.execute(
                "SELECT repo_id, commit_id, commit_seq, org_name FROM trigger_queue WHERE repo_id = ?"
                " ORDER BY commit_seq LIMIT 1 FOR UPDATE SKIP LOCKED",
                (repo_id,),
            ).fetchone()
            if row is None:
                yield None
                return
            yield QueuedCommit(row["repo_id"], row["commit_id"], int(row["commit_seq"]), row["org_name"])
            db.execute(
                "DELETE FROM trigger_queue WHERE repo_id = ? AND commit_id = ?",
                (row["repo_id"], row["commit_id"]),
            )

    def queued_repositories(self, older_than_us: int) -> list[str]:
        """Return the repositories with commits queued before ``older_than_us`` (microseconds since 1970)."""
        rows = self._all("SELECT DISTINCT repo_id FROM trigger_queue WHERE enqueued_us < ?", older_than_us)
        return [str(row[0]) for row in rows]

    def lineage_of(self, repo_id: str, commit_id: str) -> list[str]:
        """Return the trigger lineage of a commit: empty unless a trigger's sandbox made it."""
        row = self._one(
            "SELECT lineage FROM trigger_runs WHERE repo_id = ? AND sandbox_commit_id = ?", repo_id, commit_id
        )
        return list(json.loads(row["lineage"])) if row is not None else []


def match_changes(conditions: Iterable[Mapping[str, str]], changes: Iterable[tuple[str, str]]) -> list[str]:
    """Return the changed paths that satisfy at least one condition.

    Args:
        conditions: Normalised conditions (``type``, ``prefix`` or ``path``, ``diff_type``).
        changes: ``(path, status)`` pairs with the engine's diff statuses (added, modified, removed).

    """
    rules = list(conditions)
    matched: list[str] = []
    for path, status in changes:
        kind = _DIFF_KIND.get(status, status)
        for rule in rules:
            if rule.get("diff_type", "any") not in ("any", kind):
                continue
            if rule["type"] == "prefix" and path.startswith(rule.get("prefix", "")):
                matched.append(path)
                break
            if rule["type"] == "path_exact" and path == rule.get("path"):
                matched.append(path)
                break
    return matched


class TriggerDispatcher:
    """Evaluates triggers after each commit and starts their sandboxes (see the module docstring).

    Args:
        store: The trigger store.
        state: ``app.state`` (for ``engine``, ``registry`` and, looked up at each commit, ``runtime``).

    """

    #: Seconds between two sweeps of the queue for commits no replica is evaluating (cluster only).
    SWEEP_INTERVAL = 5.0
    #: Age in seconds of a queued commit before a sweep takes it (its own replica is normally on it).
    SWEEP_GRACE = 2.0

    def __init__(self, store: TriggerStore, state: State) -> None:
        self.store = store
        self._state = state
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        #: Whether commits go through the shared queue (the store is on PostgreSQL).
        self.clustered = store.dialect == "postgres"
        #: Whether this replica evaluates queued commits (it runs sandboxes); set by `install`.
        self.evaluates = True
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._subscription: Subscription | None = None
        self._listener: Listener | None = None

    def _lock(self, repo_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(repo_id, threading.Lock())

    def record_commit(self, org_name: str, repo: RepoRecord, commit: CommitInfo) -> None:
        """Queue a commit for evaluation, before the request that made it is answered (cluster only)."""
        self.store.enqueue(org_name, repo.id, commit.id, commit.seq)

    def on_commit(self, org_name: str, repo: RepoRecord, commit: CommitInfo) -> None:
        """Evaluate the repository's enabled triggers against a new commit (a commit listener)."""
        if self.clustered:
            if self.evaluates:
                self.drain(repo.id, wait=True)
            return
        with self._lock(repo.id):
            self._evaluate(org_name, repo, commit)

    def _evaluate(self, org_name: str, repo: RepoRecord, commit: CommitInfo) -> None:
        triggers = self.store.enabled(repo.id)
        if not triggers:
            return
        engine: StorageEngine = self._state.engine
        self._settle_open_runs(engine, repo.id)
        lineage = self.store.lineage_of(repo.id, commit.id)
        changes = list(self._changes(engine, repo.id, commit))
        for trigger in triggers:
            matched = match_changes(trigger.conditions, changes)
            if matched and self._first_run(trigger, commit.id):
                self._fire(org_name, repo, commit, trigger, matched, lineage)

    def _first_run(self, trigger: TriggerRecord, commit_id: str) -> bool:
        """Whether the trigger has no run for the commit yet (cluster: a re-evaluation after a crash)."""
        if not self.clustered:
            return True
        found = self.store.run_status(trigger.id, commit_id)
        if found is None:
            return True
        run_id, status = found
        if status == "pending":
            # The replica starting its sandbox died before recording the outcome.
            self.store.finish_run(
                run_id,
                "failed",
                reason="evaluator_lost",
                error_message="the server evaluating this trigger stopped before starting its sandbox",
            )
        return False

    def drain(self, repo_id: str, *, wait: bool) -> int:
        """Evaluate the repository's queued commits, oldest first; return how many (cluster only).

        Args:
            repo_id: The repository.
            wait: Wait while another replica evaluates the repository (it may be finishing the last row);
                False returns at once in that case.

        """
        evaluated = 0
        while True:
            with self.store.claim(repo_id, wait=wait) as queued:
                if queued is None:
                    return evaluated
                self._evaluate_queued(queued)
                evaluated += 1

    def _evaluate_queued(self, queued: QueuedCommit) -> None:
        registry: Registry = self._state.registry
        engine: StorageEngine = self._state.engine
        try:
            repo = registry.get_repo_by_id(queued.repo_id)
            commit = engine.get_commit(queued.repo_id, queued.commit_id)
        except (ApiError, NotFound):
            return  # the repository (or its history) is gone: nothing to evaluate
        try:
            self._evaluate(queued.org_name, repo, commit)
        except DatabaseUnavailable:
            raise  # the row stays queued; a sweep tries again
        except Exception:
            logger.exception("evaluating the triggers of commit %s failed", queued.commit_id)

    def sweep(self) -> int:
        """Evaluate commits queued a while ago that no replica is evaluating; return how many."""
        cutoff = int((time.time() - self.SWEEP_GRACE) * 1_000_000)
        return sum(self.drain(repo_id, wait=False) for repo_id in self.store.queued_repositories(cutoff))

    def listen(self, database_url: str) -> None:
        """Drain a repository's queue when another replica announces a commit there (sandbox replicas)."""
        from tilde.server.cluster.notify import listener

        executor = self._state.listener_executor

        def queued(repo_id: str) -> None:
            # Not in the listener's thread: a drain evaluates triggers and starts sandboxes.
            try:
                executor.submit(self._drain_quietly, repo_id)
            except RuntimeError:  # shutting down: the sweep of a replica still up takes it
                pass

        self._listener = listener(database_url)
        self._subscription = self._listener.subscribe(QUEUE_CHANNEL, queued)

    def _drain_quietly(self, repo_id: str) -> None:
        try:
            # Not waiting: a replica evaluating the repository now takes this row too, or the sweep does.
            self.drain(repo_id, wait=False)
        except Exception:
            logger.exception("draining the trigger queue of repository %s failed", repo_id)

    def start_sweeper(self) -> None:
        """Sweep the queue every `SWEEP_INTERVAL` seconds in a daemon thread until `close` (cluster only)."""
        if self._sweeper is not None or not self.clustered:
            return

        def loop() -> None:
            while not self._stop.wait(self.SWEEP_INTERVAL):
                try:
                    self.sweep()
                except DatabaseUnavailable as error:
                    logger.warning("trigger queue sweep skipped: %s", error)
                except Exception:
                    logger.exception("trigger queue sweep failed")

        self._sweeper = threading.Thread(target=loop, name="tilde-trigger-sweep", daemon=True)
        self._sweeper.start()

    def close(self) -> None:
        """Stop listening and the sweeper thread (waits for a sweep in progress)."""
        self._stop.set()
        if self._subscription is not None and self._listener is not None:
            self._subscription.cancel()
            self._listener.release()
            self._subscription = self._listener = None
        if self._sweeper is not None:
            self._sweeper.join(timeout=60)

    def _settle_open_runs(self, engine: StorageEngine, repo_id: str) -> None:
        for run_id, sandbox_id in self.store.open_sandbox_runs(repo_id):
            try:
                session = engine.get_session(repo_id, sandbox_id)
            except NotFound:
                self.store.settle(run_id, None)
                continue
            if session.commit_id or session.state in ("committed", "rolled_back"):
                self.store.settle(run_id, session.commit_id)

    @staticmethod
    def _changes(engine: StorageEngine, repo_id: str, commit: CommitInfo) -> Iterable[tuple[str, str]]:
        after = ""
        while True:
            page = engine.diff(repo_id, left=commit.parent_id, right=commit.id, after=after, limit=_DIFF_PAGE)
            for item in page.items:
                if item.type == "object" and item.status:
                    yield item.path, item.status
            if not page.has_more or not page.next_cursor:
                return
            after = page.next_cursor

    def _fire(
        self,
        org_name: str,
        repo: RepoRecord,
        commit: CommitInfo,
        trigger: TriggerRecord,
        matched: list[str],
        lineage: list[str],
    ) -> None:
        if trigger.id in lineage:
            self.store.add_run(
                trigger,
                commit.id,
                "skipped",
                matched_paths=matched,
                lineage=lineage,
                reason="trigger_loop",
                error_message="a sandbox this trigger started made the commit (directly or via others)",
            )
            return
        run_id = self.store.add_run(
            trigger, commit.id, "pending", matched_paths=matched, lineage=[*lineage, trigger.id]
        )
        try:
            sandbox_id = self._start(org_name, repo, commit, trigger, run_id)
        except ApiError as exc:
            self.store.finish_run(run_id, "failed", reason=exc.code, error_message=exc.message)
        except Exception as exc:
            logger.exception("trigger %s could not start a sandbox for commit %s", trigger.id, commit.id)
            self.store.finish_run(run_id, "failed", reason="internal_error", error_message=str(exc))
        else:
            self.store.finish_run(run_id, "created", sandbox_id=sandbox_id)

    def _principal(self, repo: RepoRecord, trigger: TriggerRecord) -> Principal:
        registry: Registry = self._state.registry
        kind, principal_id = (
            (trigger.run_as["type"], trigger.run_as["id"])
            if trigger.run_as
            else (trigger.created_by_type, trigger.created_by)
        )
        if kind == "user":
            user = registry.get_user(principal_id)
            if user is not None:
                return Principal("user", user.id, user.username)
        elif kind in ("agent", "role"):
            principal = org_principal(registry, {"type": kind, "id": principal_id}, repo.organization_id)
            if principal is not None:
                return principal
        raise ApiError(
            403, "principal_not_found", f"the trigger's principal ({kind} {principal_id}) no longer exists"
        )

    def _start(
        self, org_name: str, repo: RepoRecord, commit: CommitInfo, trigger: TriggerRecord, run_id: str
    ) -> str:
        runtime = getattr(self._state, "runtime", None)
        if runtime is None:
            raise ApiError(503, "runtime_unavailable", "this server has no sandbox runtime")
        spec = {key: value for key, value in trigger.sandbox_config.items() if key != "run_as"}
        # What fired the sandbox, for the code inside; the trigger's own env_vars win.
        spec["env_vars"] = {
            "TILDE_TRIGGER_ID": trigger.id,
            "TILDE_TRIGGER_RUN_ID": run_id,
            "TILDE_TRIGGER_COMMIT_ID": commit.id,
            **trigger.sandbox_config.get("env_vars", {}),
        }
        principal = self._principal(repo, trigger)
        # The same authorization as a sandbox created over HTTP, as of now: a principal who lost access to the
        # organization, or whose policies no longer allow CreateSandbox, no longer gets sandboxes started.
        registry: Registry = self._state.registry
        org = registry.get_org_by_id(repo.organization_id)
        if org is None:
            raise ApiError(404, "not_found", "the repository's organization no longer exists")
        auth: Authenticator = self._state.auth
        registry.refresh_iam_generation()  # rights changed through another replica count too
        auth.authorize(principal, "CreateSandbox", org, repo)
        sandbox_id: str = runtime.create(org_name=org_name, repo=repo, principal=principal, spec=spec)
        return sandbox_id


def install(app: Starlette) -> TriggerDispatcher:
    """Open the trigger store in the data directory and register the commit listener (``create_app`` does).

    Call it once per application.

    Afterwards ``app.state.trigger_store`` serves the routes and every commit is evaluated. The store closes
    when the application is garbage-collected.

    Args:
        app: The application (its ``state`` has ``config``, ``engine``, ``registry``, ``commit_listeners``).

    """
    state = app.state
    store = TriggerStore(state.config.database("triggers"))
    dispatcher = TriggerDispatcher(store, state)
    state.trigger_store = store
    state.trigger_dispatcher = dispatcher
    state.commit_listeners.append(dispatcher.on_commit)
    if dispatcher.clustered:
        # Queued before the commit's request is answered: an acknowledged commit is always evaluated.
        state.commit_journal = [*getattr(state, "commit_journal", []), dispatcher.record_commit]
        # Only replicas that run sandboxes evaluate: an API-only one could not start them.
        dispatcher.evaluates = bool(state.config.sandbox.get("enabled", True))
        if dispatcher.evaluates:
            dispatcher.listen(state.config.database_url)
            dispatcher.start_sweeper()
    weakref.finalize(app, _close, dispatcher, store)
    return dispatcher


def _close(dispatcher: TriggerDispatcher, store: TriggerStore) -> None:
    dispatcher.close()
    store.close()
