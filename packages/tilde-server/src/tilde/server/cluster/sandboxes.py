"""Sandbox records shared by the nodes of a cluster (table ``cluster_sandboxes``), and the lost-node reaper.

The node that runs a sandbox (its owner) keeps the live record in memory, as a server alone does, and writes
it through to this table on creation and on every status change: the row holds the owner's node id, the
status and the same JSON document the data directory's ``state.json`` holds
(`tilde.server.sandbox.persistence.record_state`). Each write announces the sandbox's id on the ``LISTEN``
channel `CHANNEL` when its transaction commits.

Any node can therefore list a repository's sandboxes (ordered by creation time, then id, with the id of the
last one as the cursor, as on one node) and read one's status as a `RemoteSandbox`; a status long poll on a
node that does not own the sandbox waits for the announcement (and re-reads every `POLL` seconds in case one
was missed while the listening connection was down).

A terminal status in the table is final, as it is in memory: a later write is refused, and the owner's record
takes the table's final status (if the sandbox still runs, the owner was declared lost while it could not
renew its lease and the session is gone: the owner cancels it).

The reaper runs on every node after each heartbeat and acts on one at a time (a PostgreSQL advisory lock): the
non-terminal sandboxes of nodes without a live lease become ``failed/sandbox_lost`` and their sessions are
rolled back; nodes gone for longer than `FORGET_GONE` are forgotten with their finished sandboxes. A node that
starts again with the same id does the same at once for its own earlier sandboxes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tilde.server._db import Migration, SqlStore
from tilde.server._ids import utc_now
from tilde.server.cluster.nodes import NOW_US, NodeCluster
from tilde.server.cluster.notify import listener, notify_in
from tilde.server.sandbox.persistence import record_from_state, record_state
from tilde.server.sandbox.record import TERMINAL, RemoteSandbox, SandboxRecord

__all__ = ["CHANNEL", "FORGET_GONE", "POLL", "SandboxTable", "SharedSandboxes"]

logger = logging.getLogger("tilde.server.cluster")

#: The notification channel of status changes (payload: the sandbox id).
CHANNEL = "tilde_sandbox_status"
#: Seconds a long poll on another node waits at most between two reads of the table.
POLL = 2.0
#: Seconds after which the reaper forgets a dead node and its finished sandboxes (a node removed for good; a
#: node that comes back later shares again what its data directory kept).
FORGET_GONE = 24 * 3600.0
#: The advisory lock that lets one node at a time reap the sandboxes of dead nodes.
REAPER_LOCK = "tilde-cluster-sandbox-reaper"
_STATUS_COPIED = ("status", "status_reason", "exit_code", "commit_id", "web_url", "error_message")

_SANDBOXES_V1 = """
CREATE TABLE IF NOT EXISTS cluster_sandboxes (
    id TEXT PRIMARY KEY,
    repo_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    status TEXT NOT NULL,
    terminal INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cluster_sandboxes_by_repo ON cluster_sandboxes (repo_id, created_us, id);
CREATE INDEX IF NOT EXISTS cluster_sandboxes_active ON cluster_sandboxes (terminal, node_id);
"""

_MIGRATIONS = (Migration(1, "sandbox records shared by the nodes", _SANDBOXES_V1),)


def _microseconds(timestamp: str) -> int:
    text = timestamp.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        # Python 3.10's fromisoformat takes exactly 3 or 6 digits of a second's fraction; RFC 3339 any number.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    moment = datetime.fromisoformat(text)
    return int(moment.timestamp() * 1_000_000)


@dataclass(frozen=True)
class RepoRef:
    """The repository of a `RemoteSandbox` (its records need only the id)."""

    id: str


class SandboxTable(SqlStore):
    """The ``cluster_sandboxes`` table (in the cluster's schema, next to ``cluster_nodes``)."""

    def __init__(self, database: Any) -> None:
        super().__init__(database, migrations=_MIGRATIONS, component="cluster_sandboxes")

    def put(self, record: SandboxRecord, node_id: str) -> dict[str, Any] | None:
        """Write a record through and announce it.

        Returns:
            None when written; the table's document when it holds a terminal status already (which stays).

        """
        state = json.dumps(record_state(record))
        terminal = record.status in TERMINAL
        with self._tx() as conn:
            row = conn.execute(
                "SELECT terminal, state FROM cluster_sandboxes WHERE id = ? FOR UPDATE", (record.id,)
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO cluster_sandboxes (id, repo_id, node_id, created_us, status, terminal,"
                    " state) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.repo.id,
                        node_id,
                        _microseconds(record.created_at),
                        record.status,
                        terminal,
                        state,
                    ),
                )
            elif row[0]:
                final: dict[str, Any] = json.loads(row[1])
                return final
            else:
                conn.execute(
                    "UPDATE cluster_sandboxes SET status = ?, terminal = ?, state = ?, node_id = ?"
                    " WHERE id = ?",
                    (record.status, terminal, state, node_id, record.id),
                )
            notify_in(conn, CHANNEL, record.id)
        return None

    def get(self, repo_id: str, sandbox_id: str) -> tuple[str, dict[str, Any]] | None:
        """Return ``(node_id, state)`` of a repository's sandbox, or None."""
        row = self._one(
            "SELECT node_id, state FROM cluster_sandboxes WHERE id = ? AND repo_id = ?", sandbox_id, repo_id
        )
        return None if row is None else (str(row[0]), json.loads(row[1]))

    def page(
        self, repo_id: str, after: str, limit: int
    ) -> tuple[list[tuple[str, str, dict[str, Any]]], bool]:
        """Return ``(id, node_id, state)`` of a page of a repository's sandboxes by creation time, then id."""
        cursor = (
            self._one("SELECT created_us FROM cluster_sandboxes WHERE id = ? AND repo_id = ?", after, repo_id)
            if after
            else None
        )
        if cursor is None:
            rows, more = self._page(
                "SELECT id, node_id, state FROM cluster_sandboxes WHERE repo_id = ?"
                " ORDER BY created_us, id LIMIT ?",
                repo_id,
                limit=limit,
            )
        else:
            rows, more = self._page(
                "SELECT id, node_id, state FROM cluster_sandboxes WHERE repo_id = ?"
                " AND (created_us > ? OR (created_us = ? AND id > ?)) ORDER BY created_us, id LIMIT ?",
                repo_id,
                int(cursor[0]),
                int(cursor[0]),
                after,
                limit=limit,
            )
        return [(str(row[0]), str(row[1]), json.loads(row[2])) for row in rows], more

    def delete(self, ids: Iterable[str]) -> None:
        """Forget sandboxes (their owner retired them)."""
        wanted = list(ids)
        if wanted:
            with self._tx() as conn:
                conn.executemany("DELETE FROM cluster_sandboxes WHERE id = ?", [(i,) for i in wanted])

    def active_by_node(self) -> dict[str, int]:
        """Return how many sandboxes each node runs now (nodes running none are absent)."""
        rows = self._all(
            "SELECT node_id, COUNT(*) FROM cluster_sandboxes WHERE terminal = 0 GROUP BY node_id"
        )
        return {str(row[0]): int(row[1]) for row in rows}

    def of_node(self, node_id: str) -> list[tuple[str, bool]]:
        """Return ``(id, terminal)`` of every sandbox the table says ``node_id`` runs or ran."""
        rows = self._all("SELECT id, terminal FROM cluster_sandboxes WHERE node_id = ?", node_id)
        return [(str(row[0]), bool(row[1])) for row in rows]

    def lose(
        self, engine: Any, message: str, *, node_id: str | None = None, own: str | None = None
    ) -> list[str]:
        """Mark non-terminal sandboxes ``failed/sandbox_lost`` and roll back their sessions.

        Args:
            engine: The storage engine (the sessions live there).
            message: The ``error_message`` they get (``{node}`` is replaced by the owner's id).
            node_id: Only this node's sandboxes (a node starting again); None: those of every node without a
                live lease except ``own``, under the reaper's advisory lock (nothing when another node holds
                it).
            own: The calling node (never reaped by itself: it renewed its lease just before).

        Returns:
            The ids marked lost.

        """
        lost: list[str] = []
        with self._tx() as conn:
            if node_id is None:
                got = conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(?))", (REAPER_LOCK,)).fetchone()
                if not got[0]:
                    return lost
                rows = conn.execute(
                    "SELECT id, repo_id, node_id, state FROM cluster_sandboxes WHERE terminal = 0"
                    " AND node_id <> ? AND node_id NOT IN"
                    f" (SELECT node_id FROM cluster_nodes WHERE lease_until_us > {NOW_US})"
                    " FOR UPDATE SKIP LOCKED",
                    (own or "",),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT id, repo_id, node_id, state FROM cluster_sandboxes WHERE terminal = 0"
                    " AND node_id = ? FOR UPDATE",
                    (node_id,),
                ).fetchall()
            for row in rows:
                sandbox_id, repo_id, owner = str(row[0]), str(row[1]), str(row[2])
                _roll_back(engine, repo_id, sandbox_id)
                state = json.loads(row[3])
                now = utc_now()
                state.update(
                    status="failed",
                    status_reason="sandbox_lost",
                    error_message=message.format(node=owner),
                    updated_at=now,
                    finished_at=now,
                )
                conn.execute(
                    "UPDATE cluster_sandboxes SET status = ?, terminal = 1, state = ? WHERE id = ?",
                    ("failed", json.dumps(state), sandbox_id),
                )
                notify_in(conn, CHANNEL, sandbox_id)
                lost.append(sandbox_id)
            if node_id is None:
                _forget_gone(conn)
        return lost


def _forget_gone(conn: Any) -> None:
    """Delete the finished sandboxes of nodes not seen for `FORGET_GONE`, then those nodes' rows."""
    window = int(FORGET_GONE * 1_000_000)
    conn.execute(
        "DELETE FROM cluster_sandboxes WHERE terminal = 1 AND node_id NOT IN"
        f" (SELECT node_id FROM cluster_nodes WHERE lease_until_us > {NOW_US} - ?)",
        (window,),
    )
    conn.execute(f"DELETE FROM cluster_nodes WHERE lease_until_us <= {NOW_US} - ?", (window,))


def _roll_back(engine: Any, repo_id: str, session_id: str) -> None:
    from tilde.server.storage import StorageError

    try:
        if engine.get_session(repo_id, session_id).state == "open":
            engine.rollback_session(repo_id, session_id)
    except StorageError:
        pass


class SharedSandboxes:
    """The runtime's view of the cluster's sandbox table (``SandboxRuntime.shared`` on a PostgreSQL node).

    Args:
        cluster: This node.
        engine: The storage engine (lost sandboxes' sessions are rolled back there).

    """

    poll_seconds = POLL

    def __init__(self, cluster: NodeCluster, engine: Any) -> None:
        self.cluster = cluster
        self.engine = engine
        self.table = SandboxTable(cluster.database)
        self._lock = threading.Lock()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._closed = False
        self._listener = listener(cluster.database.url)
        self._subscription = self._listener.subscribe(CHANNEL, self._announced, self._wake_all)
        cluster.add_periodic(self.reap)

    # -- the owner's side ----------------------------------------------------------------------------------

    def share(self, record: SandboxRecord) -> dict[str, Any] | None:
        """Write a local record through; the table's final document when it says the sandbox ended already."""
        return self.table.put(record, self.cluster.node_id)

    def active_by_node(self) -> dict[str, int]:
        """Return how many sandboxes each node runs now (placement picks the least busy node)."""
        return self.table.active_by_node()

    def forget(self, records: Iterable[SandboxRecord]) -> None:
        """Delete retired sandboxes' rows."""
        self.table.delete(record.id for record in records)

    def adopt(self, loaded: list[SandboxRecord]) -> list[tuple[SandboxRecord, dict[str, Any]]]:
        """At start: share the records the data directory kept; lose, then forget, this node's other rows.

        Returns:
            The kept records whose rows had ended differently already (another node declared them lost), with
            the table's document: the caller makes its records say the same.

        """
        kept = {record.id for record in loaded}
        differing: list[tuple[SandboxRecord, dict[str, Any]]] = []
        for record in loaded:
            final = self.share(record)
            if final is not None:
                differing.append((record, final))
        self.table.lose(
            self.engine,
            "the node running the sandbox ({node}) stopped while it was running",
            node_id=self.cluster.node_id,
        )
        self.table.delete(
            sandbox_id for sandbox_id, _ in self.table.of_node(self.cluster.node_id) if sandbox_id not in kept
        )
        return differing

    def reap(self) -> None:
        """Mark the sandboxes of nodes whose lease ran out lost (one node at a time; a periodic duty)."""
        if self._closed:
            return
        lost = self.table.lose(
            self.engine,
            "the node running the sandbox ({node}) stopped answering",
            own=self.cluster.node_id,
        )
        if lost:
            logger.warning("marked %d sandboxes of dead nodes lost: %s", len(lost), ", ".join(lost))

    # -- any node's side -----------------------------------------------------------------------------------

    def _remote(self, sandbox_id: str, repo_id: str, node_id: str, state: dict[str, Any]) -> RemoteSandbox:
        record = record_from_state(
            state, RepoRef(repo_id), Path(), cls=RemoteSandbox, node_id=node_id, source=self
        )
        assert isinstance(record, RemoteSandbox)
        return record

    def get(self, repo_id: str, sandbox_id: str) -> RemoteSandbox | None:
        """Return the shared record of a repository's sandbox, or None."""
        found = self.table.get(repo_id, sandbox_id)
        return None if found is None else self._remote(sandbox_id, repo_id, *found)

    def refresh(self, record: RemoteSandbox) -> None:
        """Re-read a shared record's status (a forgotten sandbox keeps its last one)."""
        found = self.table.get(record.repo.id, record.id)
        if found is None:
            return
        record.node_id, state = found
        for name in _STATUS_COPIED:
            setattr(record, name, state.get(name))
        record.updated_at = state.get("updated_at", record.updated_at)
        record.finished_at = state.get("finished_at")
        record.image_note = state.get("image_note", "")
        record.warnings[:] = state.get("warnings") or []

    def page(
        self, repo_id: str, after: str, limit: int, local: dict[str, SandboxRecord]
    ) -> tuple[list[SandboxRecord], bool]:
        """Return a page of a repository's sandboxes of every node (local ones as their live records)."""
        rows, more = self.table.page(repo_id, after, limit)
        records = [
            local.get(sandbox_id) or self._remote(sandbox_id, repo_id, node_id, state)
            for sandbox_id, node_id, state in rows
        ]
        return records, more

    @contextlib.contextmanager
    def waiter(self, sandbox_id: str) -> Iterator[asyncio.Event]:
        """Yield an event of the running loop set when ``sandbox_id``'s change is announced."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(sandbox_id, []).append(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiting = self._waiters.get(sandbox_id, [])
                if entry in waiting:
                    waiting.remove(entry)
                if not waiting:
                    self._waiters.pop(sandbox_id, None)

    def _announced(self, sandbox_id: str) -> None:
        with self._lock:
            waiting = list(self._waiters.get(sandbox_id, ()))
        _wake(waiting)

    def _wake_all(self) -> None:
        with self._lock:
            waiting = [entry for group in self._waiters.values() for entry in group]
        _wake(waiting)

    def close(self) -> None:
        """Stop listening and reaping (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._subscription.cancel()
        self._listener.release()
        self._wake_all()
        self.table.close()


def _wake(waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
    for loop, event in waiting:
        with contextlib.suppress(RuntimeError):  # that loop is closed; its waiter is gone
            loop.call_soon_threadsafe(event.set)
