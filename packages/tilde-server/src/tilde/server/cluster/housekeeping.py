"""Housekeeping jobs (blob garbage collection, upload clean-up) that one replica of a cluster runs at a time.

A server on SQLite runs its jobs once at start-up, as it always did. Replicas sharing a PostgreSQL database
run them at start-up and then every `INTERVAL` seconds, but each job at most once per period for the whole
cluster: a replica takes its turn in a transaction that holds the job's advisory lock
(``pg_try_advisory_xact_lock``; a replica that does not get it skips the job) and finds the job's last run in
``cluster_jobs`` older than `MIN_GAP`; the new time is recorded when the job succeeds. Replicas starting
together, or waking at the same moment, therefore run a job once between them, never two at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from tilde.server._db import DatabaseUnavailable, Migration, PostgresDatabase, SqlStore
from tilde.server.cluster import CLUSTER_SCHEMA

__all__ = ["INTERVAL", "MIN_GAP", "Housekeeping", "JobStore"]

logger = logging.getLogger("tilde.server.cluster")

#: Seconds between two housekeeping rounds of a replica.
INTERVAL = 3600.0
#: A job whose last run (by any replica) is more recent than this is not run again.
MIN_GAP = 0.9 * INTERVAL

_MIGRATIONS = [
    Migration(
        1,
        "the last run of each housekeeping job",
        "CREATE TABLE IF NOT EXISTS cluster_jobs (name TEXT PRIMARY KEY, last_run_us INTEGER NOT NULL,"
        " node TEXT NOT NULL);",
    ),
]


class JobStore(SqlStore):
    """The ``cluster_jobs`` table and the advisory locks of the jobs.

    Args:
        database: The cluster's schema of the shared PostgreSQL database.

    """

    def __init__(self, database: PostgresDatabase) -> None:
        super().__init__(database, migrations=_MIGRATIONS, component="cluster_jobs")

    @contextmanager
    def turn(self, job: str, *, min_gap: float, node: str = "") -> Iterator[bool]:
        """Yield whether this replica runs ``job`` now; its run is recorded when the block ends normally.

        Args:
            job: The job's name.
            min_gap: Seconds that must have passed since the job's last run, by any replica.
            node: This replica's node id (recorded with the run, for the curious).

        """
        with self._tx() as db:
            locked = db.execute("SELECT pg_try_advisory_xact_lock(hashtext(?))", ("tilde-job:" + job,))
            if not locked.fetchone()[0]:
                yield False  # another replica is running it right now
                return
            row = db.execute("SELECT last_run_us FROM cluster_jobs WHERE name = ?", (job,)).fetchone()
            now = int(time.time() * 1_000_000)
            if row is not None and now - int(row[0]) < min_gap * 1_000_000:
                yield False
                return
            yield True
            db.execute(
                "REPLACE INTO cluster_jobs (name, last_run_us, node) VALUES (?, ?, ?)", (job, now, node)
            )


class Housekeeping:
    """Runs the server's housekeeping jobs (``app.state.housekeeping``).

    Args:
        jobs: ``(name, function)`` pairs, run in this order.
        database_url: The cluster's PostgreSQL URL; None for a server on SQLite (every job runs each time).
        node: This replica's node id.
        interval: Seconds between rounds of the background thread (`start`).
        min_gap: See `JobStore.turn`.

    """

    def __init__(
        self,
        jobs: Sequence[tuple[str, Callable[[], object]]],
        *,
        database_url: str | None = None,
        node: str = "",
        interval: float = INTERVAL,
        min_gap: float = MIN_GAP,
    ) -> None:
        self.jobs = list(jobs)
        self.interval = interval
        self.min_gap = min_gap
        self._node = node
        self._store = JobStore(PostgresDatabase(database_url, CLUSTER_SCHEMA)) if database_url else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def shared(self) -> bool:
        """Whether the jobs are shared with other replicas (metadata on PostgreSQL)."""
        return self._store is not None

    def run_once(self) -> list[str]:
        """Run each job whose turn it is on this replica; return the names of those that ran here.

        Raises:
            Exception: What a job raised (its run is not recorded, so the next round tries again).

        """
        ran: list[str] = []
        for name, job in self.jobs:
            if self._store is None:
                job()
                ran.append(name)
                continue
            with self._store.turn(name, min_gap=self.min_gap, node=self._node) as mine:
                if mine:
                    job()
                    ran.append(name)
        return ran

    def start(self) -> None:
        """Run a round every `interval` seconds in a daemon thread until `close` (shared jobs only)."""
        if self._store is None or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.interval):
                try:
                    self.run_once()
                except DatabaseUnavailable as error:
                    logger.warning("housekeeping round skipped: %s", error)
                except Exception:
                    logger.exception("housekeeping round failed")

        self._thread = threading.Thread(target=loop, name="tilde-housekeeping", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (waiting for a round in progress) and close the job table."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=300)
        if self._store is not None:
            self._store.close()
