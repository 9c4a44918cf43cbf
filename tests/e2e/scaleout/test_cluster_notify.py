"""The cluster's LISTEN/NOTIFY helper against a real PostgreSQL: delivery, transactions, reconnection."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

import psycopg
import pytest
from pg_server import PostgresServer

from tilde.server._db import PostgresDatabase
from tilde.server._db_postgres import shared_pool
from tilde.server.cluster.notify import Listener, listener, notify_in


class Abort(Exception):
    """Rolls a transaction back."""


#: Seconds a test waits for a notification or a resync.
DEADLINE = 30.0


@pytest.fixture
def url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


@pytest.fixture
def shared(url: str) -> Iterator[Listener]:
    found = listener(url)
    try:
        yield found
    finally:
        found.release()


def test_a_subscriber_gets_each_payload_sent_after_it_subscribed(shared: Listener) -> None:
    got: queue.Queue[str] = queue.Queue()
    subscription = shared.subscribe("tilde_test", got.put)
    for payload in ("one", "two"):
        shared.notify("tilde_test", payload)
    assert [got.get(timeout=DEADLINE), got.get(timeout=DEADLINE)] == ["one", "two"]
    subscription.cancel()
    shared.notify("tilde_test", "three")
    follower: queue.Queue[str] = queue.Queue()
    shared.subscribe("tilde_test", follower.put)
    shared.notify("tilde_test", "four")
    # "three" may still have been on its way when the follower subscribed; "four" comes after it.
    while (payload := follower.get(timeout=DEADLINE)) != "four":
        assert payload == "three"
    assert got.empty()  # the cancelled subscriber got neither


def test_a_notification_sent_in_a_transaction_goes_out_only_when_it_commits(
    shared: Listener, url: str
) -> None:
    got: queue.Queue[str] = queue.Queue()
    shared.subscribe("tilde_tx", got.put)
    pool = shared_pool(PostgresDatabase(url, "tilde_notify_test"))
    try:
        with contextlib.suppress(Abort), pool.transaction() as db:
            notify_in(db, "tilde_tx", "rolled back")
            raise Abort
        with pool.transaction() as db:
            notify_in(db, "tilde_tx", "committed")
    finally:
        pool.release()
    assert got.get(timeout=DEADLINE) == "committed"
    shared.notify("tilde_tx", "marker")
    assert got.get(timeout=DEADLINE) == "marker"


def test_after_its_connection_is_killed_the_listener_reconnects_and_asks_for_a_resync(
    shared: Listener, url: str
) -> None:
    got: queue.Queue[str] = queue.Queue()
    resynced = threading.Event()
    shared.subscribe("tilde_reconnect", got.put, resynced.set)
    before = shared.connections
    with psycopg.connect(url, autocommit=True) as admin:
        killed = admin.execute("SELECT pg_terminate_backend(%s)", (shared.backend_pid,)).fetchone()
    assert killed == (True,)
    assert resynced.wait(DEADLINE), "no resync after the connection was lost"
    assert shared.connections > before
    shared.notify("tilde_reconnect", "after")
    assert got.get(timeout=DEADLINE) == "after"


def test_channel_names_must_be_identifiers(shared: Listener) -> None:
    with pytest.raises(ValueError, match="channel"):
        shared.subscribe('x"; DROP TABLE t; --', print)
    with pytest.raises(ValueError, match="channel"):
        shared.notify("Upper", "x")
