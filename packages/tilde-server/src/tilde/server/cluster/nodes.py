"""Nodes of a PostgreSQL cluster: the ``cluster_nodes`` table, heartbeats and leases.

Every node has a row (``node_id``, ``url``, whether it runs sandboxes, ``lease_until_us``) and renews its
lease every `HEARTBEAT` seconds from a background thread; a node whose lease has run out counts as dead.
Times come from PostgreSQL's clock, so the nodes' own clocks never matter. A node that stops cleanly deletes
its row.

The same thread runs the node's periodic duties after each renewal (`NodeCluster.add_periodic`), such as the
reaper of the sandboxes of dead nodes (`tilde.server.cluster.sandboxes`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tilde.server._db import Migration, PostgresDatabase, SqlStore
from tilde.server.cluster import Cluster

__all__ = ["HEARTBEAT", "LEASE", "NOW_US", "NodeCluster", "NodeTable"]

logger = logging.getLogger("tilde.server.cluster")

#: Seconds a node's lease lasts without renewal (the default of ``ServerConfig.node_lease_seconds``).
LEASE = 10.0
#: Seconds between renewals (at most a fifth of the lease).
HEARTBEAT = 2.0
#: How long a look-up of the live nodes is reused (seconds).
LIVE_CACHE = 1.0

#: PostgreSQL's current time in microseconds since the epoch (the clock every lease is measured on).
NOW_US = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"

_NODES_V1 = """
CREATE TABLE IF NOT EXISTS cluster_nodes (
    node_id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    sandboxes INTEGER NOT NULL,
    started_us INTEGER NOT NULL,
    lease_until_us INTEGER NOT NULL
);
"""

_MIGRATIONS = (Migration(1, "the nodes of the cluster and their leases", _NODES_V1),)


class NodeTable(SqlStore):
    """The ``cluster_nodes`` table (in the cluster's schema)."""

    def __init__(self, database: PostgresDatabase) -> None:
        super().__init__(database, migrations=_MIGRATIONS, component="cluster_nodes")

    def register(self, node_id: str, url: str, sandboxes: bool, lease_seconds: float) -> None:
        """Insert or replace this node's row with a fresh lease."""
        self._one(
            "INSERT INTO cluster_nodes (node_id, url, sandboxes, started_us, lease_until_us)"
            f" VALUES (?, ?, ?, {NOW_US}, {NOW_US} + ?)"
            " ON CONFLICT (node_id) DO UPDATE SET url = EXCLUDED.url, sandboxes = EXCLUDED.sandboxes,"
            " started_us = EXCLUDED.started_us, lease_until_us = EXCLUDED.lease_until_us RETURNING node_id",
            node_id,
            url,
            sandboxes,
            int(lease_seconds * 1_000_000),
        )

    def renew(self, node_id: str, url: str, sandboxes: bool, lease_seconds: float) -> bool:
        """Extend this node's lease; False when its row is gone (it is registered again by the caller)."""
        row = self._one(
            f"UPDATE cluster_nodes SET lease_until_us = {NOW_US} + ?, url = ?, sandboxes = ?"
            " WHERE node_id = ? RETURNING node_id",
            int(lease_seconds * 1_000_000),
            url,
            sandboxes,
            node_id,
        )
        return row is not None

    def remove(self, node_id: str) -> None:
        """Delete this node's row (a clean stop)."""
        self._one("DELETE FROM cluster_nodes WHERE node_id = ? RETURNING node_id", node_id)

    def live(self) -> list[tuple[str, str, bool]]:
        """Return ``(node_id, url, runs_sandboxes)`` of every node whose lease has not run out, by id."""
        rows = self._all(
            "SELECT node_id, url, sandboxes FROM cluster_nodes"
            f" WHERE lease_until_us > {NOW_US} ORDER BY node_id"
        )
        return [(str(row[0]), str(row[1]), bool(row[2])) for row in rows]


class NodeCluster(Cluster):
    """A node of the cluster sharing one PostgreSQL database (``enabled`` is True).

    Registers the node at once and renews its lease from a daemon thread until `close`.

    Args:
        database: The cluster's schema (`tilde.server.cluster.CLUSTER_SCHEMA`) of the server's database.
        node_id: This node's id.
        url: The base URL other nodes reach this one at.
        secret: The key of signed internal requests (replaced by the cluster-wide one once known).
        runs_sandboxes: Whether this node runs sandboxes.
        lease_seconds: How long the lease lasts without renewal.

    """

    enabled = True

    def __init__(
        self,
        database: PostgresDatabase,
        node_id: str,
        url: str,
        secret: bytes,
        *,
        runs_sandboxes: bool = True,
        lease_seconds: float = LEASE,
    ) -> None:
        super().__init__(node_id, url, secret, runs_sandboxes=runs_sandboxes)
        self.database = database
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = min(HEARTBEAT, lease_seconds / 5)
        self.nodes = NodeTable(database)
        self._periodic: list[Callable[[], None]] = []
        self._live: list[tuple[str, str, bool]] = []
        self._live_at = -LIVE_CACHE
        self._live_lock = threading.Lock()
        self._stop = threading.Event()
        self.nodes.register(node_id, self.url, runs_sandboxes, lease_seconds)
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._beat, name="tilde-cluster-heartbeat", daemon=True)
        self._thread.start()

    def add_periodic(self, duty: Callable[[], None]) -> None:
        """Run ``duty`` in the heartbeat thread after every renewal (its errors are logged, never raised)."""
        self._periodic.append(duty)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self.heartbeat()

    def heartbeat(self) -> None:
        """Renew the lease once and run the periodic duties (what the thread does every few seconds)."""
        try:
            now = time.monotonic()
            if now - self._renewed > self.lease_seconds:
                logger.warning(
                    "node %s renewed its lease %.1f s late: other nodes may have declared it lost",
                    self.node_id,
                    now - self._renewed,
                )
            if not self.nodes.renew(self.node_id, self.url, self.runs_sandboxes, self.lease_seconds):
                self.nodes.register(self.node_id, self.url, self.runs_sandboxes, self.lease_seconds)
            self._renewed = now
        except Exception:
            logger.warning("node %s could not renew its lease", self.node_id, exc_info=True)
        for duty in list(self._periodic):
            if self._stop.is_set():
                return
            try:
                duty()
            except Exception:
                logger.warning("a periodic cluster duty failed", exc_info=True)

    def live_nodes(self) -> list[tuple[str, str, bool]]:
        """Return ``(node_id, url, runs_sandboxes)`` of the live nodes (a look-up reused for a second)."""
        with self._live_lock:
            if time.monotonic() - self._live_at < LIVE_CACHE:
                return self._live
        live = self.nodes.live()
        with self._live_lock:
            self._live, self._live_at = live, time.monotonic()
        return live

    def node_url(self, node_id: str) -> str | None:
        """Return the base URL of the live node ``node_id`` (None when its lease ran out or it is unknown)."""
        if node_id == self.node_id:
            return self.url
        for found, url, _ in self.live_nodes():
            if found == node_id:
                return url
        return None

    def sandbox_nodes(self) -> list[tuple[str, str]]:
        """Return ``(node_id, url)`` of the live nodes that run sandboxes."""
        return [(node_id, url) for node_id, url, sandboxes in self.live_nodes() if sandboxes]

    def close(self) -> None:
        """Stop the heartbeats and leave the cluster (the row is deleted; idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            self.nodes.remove(self.node_id)
        except Exception:
            logger.warning("node %s could not remove its row", self.node_id, exc_info=True)
        self.nodes.close()
