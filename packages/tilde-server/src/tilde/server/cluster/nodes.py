"""Nodes of a PostgreSQL cluster: the ``cluster_nodes`` table, heartbeats and leases.

Every node has a row (``node_id``, ``url``, whether it runs sandboxes, ``lease_until_us``) and renews its
lease every `HEARTBEAT` seconds from a background thread; a node whose lease has run out counts as dead.
Times come from PostgreSQL's clock, so the nodes' own clocks never matter. A node that stops cleanly ends its
lease at once.

The same thread runs the node's periodic duties after each renewal (`NodeCluster.add_periodic`), such as the
reaper of the sandboxes of dead nodes (`tilde.server.cluster.sandboxes`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

from tilde.server._db import Connection, Migration, PostgresDatabase, SqlStore, add_column
from tilde.server.cluster import Cluster
from tilde.server.cluster.settings import ClusterSettingsError

__all__ = ["HEARTBEAT", "LEASE", "NOW_US", "NodeCluster", "NodeIdInUse", "NodeTable"]

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


def _homes(conn: Connection, dialect: str) -> None:
    # Where each node's process runs (machine and data directory), and which process it is.
    add_column(conn, "cluster_nodes", "home", "TEXT NOT NULL DEFAULT ''")
    add_column(conn, "cluster_nodes", "instance", "TEXT NOT NULL DEFAULT ''")


_MIGRATIONS = (
    Migration(1, "the nodes of the cluster and their leases", _NODES_V1),
    Migration(2, "the home and process of each node", _homes),
)


class NodeIdInUse(ClusterSettingsError):
    """Another live replica, elsewhere, uses this node id (each replica needs its own)."""


class NodeTable(SqlStore):
    """The ``cluster_nodes`` table (in the cluster's schema)."""

    def __init__(self, database: PostgresDatabase) -> None:
        super().__init__(database, migrations=_MIGRATIONS, component="cluster_nodes")

    def claim(
        self, node_id: str, home: str, instance: str, url: str, sandboxes: bool, lease_seconds: float
    ) -> str | None:
        """Take the row of ``node_id`` with a fresh lease, unless a live replica with another home holds it.

        A live row of the same home (machine and data directory) is this replica's own previous process,
        which was killed before its lease ran out: it is taken over at once.

        Returns:
            None when claimed, else the home of the live replica that holds the id.

        """
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT home, lease_until_us > {NOW_US} FROM cluster_nodes WHERE node_id = ? FOR UPDATE",
                (node_id,),
            ).fetchone()
            if row is not None and row[1] and str(row[0]) != home:
                return str(row[0])
            conn.execute(
                "INSERT INTO cluster_nodes"
                " (node_id, url, sandboxes, started_us, lease_until_us, home, instance)"
                f" VALUES (?, ?, ?, {NOW_US}, {NOW_US} + ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET"
                " url = EXCLUDED.url, sandboxes = EXCLUDED.sandboxes, started_us = EXCLUDED.started_us,"
                " lease_until_us = EXCLUDED.lease_until_us, home = EXCLUDED.home,"
                " instance = EXCLUDED.instance",
                (node_id, url, sandboxes, int(lease_seconds * 1_000_000), home, instance),
            )
        return None

    def renew(self, node_id: str, instance: str, url: str, sandboxes: bool, lease_seconds: float) -> bool:
        """Extend this process's lease; False when its row is gone or another process claimed it."""
        row = self._one(
            f"UPDATE cluster_nodes SET lease_until_us = {NOW_US} + ?, url = ?, sandboxes = ?"
            " WHERE node_id = ? AND instance = ? RETURNING node_id",
            int(lease_seconds * 1_000_000),
            url,
            sandboxes,
            node_id,
            instance,
        )
        return row is not None

    def leave(self, node_id: str, instance: str) -> None:
        """End this process's lease now (a clean stop): the node is dead at once, its row and sandboxes stay.

        A node that comes back (a restart, an upgrade) finds them; the reaper forgets the rows of nodes gone
        for longer than `tilde.server.cluster.sandboxes.FORGET_GONE`.
        """
        self._one(
            f"UPDATE cluster_nodes SET lease_until_us = {NOW_US} WHERE node_id = ? AND instance = ?"
            " RETURNING node_id",
            node_id,
            instance,
        )

    def remove(self, node_id: str, instance: str) -> None:
        """Delete this process's row (a clean stop; a row another process claimed stays)."""
        self._one(
            "DELETE FROM cluster_nodes WHERE node_id = ? AND instance = ? RETURNING node_id",
            node_id,
            instance,
        )

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
        home: Where this replica runs (machine and data directory): a live row of the same node id and
            another home is another replica, and the id is not taken from it.

    Raises:
        NodeIdInUse: A replica with another home kept renewing the id's lease for a whole lease period.

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
        home: str = "",
    ) -> None:
        super().__init__(node_id, url, secret, runs_sandboxes=runs_sandboxes)
        self.home = home
        #: This process (a restarted replica is another instance of the same node).
        self.instance = secrets.token_hex(8)
        self.database = database
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = min(HEARTBEAT, lease_seconds / 5)
        self.nodes = NodeTable(database)
        self._periodic: list[Callable[[], None]] = []
        self._live: list[tuple[str, str, bool]] = []
        self._live_at = -LIVE_CACHE
        self._live_lock = threading.Lock()
        self._stop = threading.Event()
        self._claim_at_start()
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._beat, name="tilde-cluster-heartbeat", daemon=True)
        self._thread.start()

    def _claim(self) -> str | None:
        return self.nodes.claim(
            self.node_id, self.home, self.instance, self.url, self.runs_sandboxes, self.lease_seconds
        )

    def _claim_at_start(self) -> None:
        """Take the node's row, waiting out the lease of a replica elsewhere that used the id before."""
        deadline = time.monotonic() + self.lease_seconds + 2 * self.heartbeat_seconds
        while (holder := self._claim()) is not None:
            if time.monotonic() > deadline:
                self.nodes.close()
                raise NodeIdInUse(
                    f"node id {self.node_id!r} is in use by another live replica ({holder}); give every "
                    "replica its own --node-id"
                )
            time.sleep(min(0.5, self.heartbeat_seconds))

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
            if not self.nodes.renew(
                self.node_id, self.instance, self.url, self.runs_sandboxes, self.lease_seconds
            ):
                holder = self._claim()
                if holder is not None:
                    logger.error(
                        "node id %s was taken by another replica (%s): this one is not part of the cluster"
                        " until that one stops; give every replica its own node id",
                        self.node_id,
                        holder,
                    )
                    return
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
        """Stop the heartbeats and leave the cluster (the lease ends now; idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            self.nodes.leave(self.node_id, self.instance)
        except Exception:
            logger.warning("node %s could not end its lease", self.node_id, exc_info=True)
        self.nodes.close()
