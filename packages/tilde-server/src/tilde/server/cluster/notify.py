"""PostgreSQL ``LISTEN``/``NOTIFY`` between the replicas of a cluster.

One `Listener` per process and database (`listener` hands out the shared one, `Listener.release` gives it
back): a daemon thread holds one connection that ``LISTEN``-s on every channel somebody subscribed to and
calls the subscribers' callbacks with each payload. Callbacks run in that thread, so they must be quick
(set an event, ``loop.call_soon_threadsafe``) and never block on the database.

Notifications are delivered at most once and only while the connection is up: when it drops, the thread
reconnects with growing pauses (0.1 s up to 5 s) and then calls every subscription's ``resync`` callback,
because notifications sent meanwhile are gone for good. A subscriber that must not miss a change therefore
re-reads the state it cares about on ``resync`` (and, like any long poll, after subscribing and before
waiting).

Sending: `notify_in` inside a transaction of the stores (the notification goes out when it commits, and not
at all when it rolls back — what a status change wants), or `Listener.notify` on its own.

Channels are PostgreSQL identifiers: lower-case letters, digits and ``_``, at most 63 characters. Payloads
are text below 8000 bytes (PostgreSQL's limit); send ids, not documents.
"""

from __future__ import annotations

import logging
import os
import re
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = ["Listener", "Subscription", "listener", "notify_in", "valid_channel"]

logger = logging.getLogger("tilde.server.cluster")

#: Seconds between checks of an idle listening connection (a dead peer is noticed within about this).
IDLE_CHECK = 15.0
#: Pauses between reconnection attempts: the first, and the most.
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
#: Seconds `Listener.subscribe` waits for its ``LISTEN`` to be in force.
SUBSCRIBE_TIMEOUT = 10.0
_CHANNEL = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def valid_channel(channel: str) -> bool:
    """Whether ``channel`` is a usable channel name (lower-case identifier, at most 63 characters)."""
    return bool(_CHANNEL.fullmatch(channel))


def _check_channel(channel: str) -> None:
    if not valid_channel(channel):
        raise ValueError(f"invalid notification channel {channel!r}")


def notify_in(db: Any, channel: str, payload: str) -> None:
    """Send a notification from inside a transaction (delivered when it commits, dropped on rollback).

    Args:
        db: A connection of the stores in a transaction on the cluster's PostgreSQL database.
        channel: The channel.
        payload: The text sent (below 8000 bytes).

    """
    _check_channel(channel)
    db.execute("SELECT pg_notify(?, ?)", (channel, payload))


@dataclass(eq=False)
class Subscription:
    """One subscriber of one channel (returned by `Listener.subscribe`; `cancel` ends it).

    Attributes:
        channel: The channel.
        callback: Called with each payload, in the listener thread.
        resync: Called after a reconnection, when notifications may have been missed; None if not needed.

    """

    channel: str
    callback: Callable[[str], None]
    resync: Callable[[], None] | None = None
    _owner: Listener | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """Stop delivering to this subscriber (the channel stays listened to; that costs nothing)."""
        if self._owner is not None:
            self._owner._remove(self)
            self._owner = None


class Listener:
    """The process's ``LISTEN`` connection to one database and the thread reading it.

    Args:
        url: The PostgreSQL URL (never logged).

    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[Subscription]] = {}
        self._listening: set[str] = set()
        self._pending: list[tuple[str, threading.Event]] = []
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._sender: psycopg.Connection[Any] | None = None
        self._sender_lock = threading.Lock()
        self._users = 0
        #: Times the thread has (re)connected, and the server process of its connection (diagnostics).
        self.connections = 0
        self.backend_pid: int | None = None
        self._thread = threading.Thread(target=self._run, name="tilde-cluster-listen", daemon=True)
        self._thread.start()

    # -- subscribing -----------------------------------------------------------------------------------

    def subscribe(
        self, channel: str, callback: Callable[[str], None], resync: Callable[[], None] | None = None
    ) -> Subscription:
        """Call ``callback(payload)`` for every notification on ``channel`` from now on.

        Returns once the ``LISTEN`` is in force (notifications sent after that are delivered), or after
        `SUBSCRIBE_TIMEOUT` seconds while the database is unreachable (then ``resync`` is called once it is
        back).

        Args:
            channel: The channel (`valid_channel`).
            callback: Called with each payload in the listener thread; quick, non-blocking.
            resync: Called after the connection was lost and made again.

        """
        _check_channel(channel)
        subscription = Subscription(channel, callback, resync, self)
        ready = threading.Event()
        with self._lock:
            self._subscribers.setdefault(channel, []).append(subscription)
            if channel in self._listening:
                ready.set()
            else:
                self._pending.append((channel, ready))
        if not ready.is_set():
            self._wake()
            ready.wait(SUBSCRIBE_TIMEOUT)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._subscribers.get(subscription.channel, [])
            if subscription in subscribers:
                subscribers.remove(subscription)

    # -- sending ---------------------------------------------------------------------------------------

    def notify(self, channel: str, payload: str) -> None:
        """Send a notification now, outside any transaction (one round trip on a sending connection).

        Raises:
            tilde.server._db.DatabaseUnavailable: The database cannot be reached.

        """
        from tilde.server._db import DatabaseUnavailable

        _check_channel(channel)
        with self._sender_lock:
            for attempt in range(2):
                try:
                    if self._sender is None or self._sender.closed:
                        self._sender = psycopg.connect(self._url, autocommit=True)
                    self._sender.execute("SELECT pg_notify(%s, %s)", (channel, payload))
                    return
                except psycopg.OperationalError as error:
                    self._close_sender()
                    if attempt == 1:
                        raise DatabaseUnavailable(
                            f"the database is unavailable ({type(error).__name__}); try again"
                        ) from None

    def _close_sender(self) -> None:
        if self._sender is not None:
            try:
                self._sender.close()
            except psycopg.Error:
                pass
            self._sender = None

    # -- the thread ------------------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _dispatch(self, notification: psycopg.Notify) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(notification.channel, ()))
        for subscription in subscribers:
            try:
                subscription.callback(notification.payload)
            except Exception:
                logger.exception("a notification callback for %s failed", notification.channel)

    def _resync_all(self) -> None:
        with self._lock:
            subscribers = [s for group in self._subscribers.values() for s in group]
        for subscription in subscribers:
            if subscription.resync is None:
                continue
            try:
                subscription.resync()
            except Exception:
                logger.exception("a resync callback for %s failed", subscription.channel)

    def _listen_pending(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        try:
            for channel, ready in pending:
                if channel not in self._listening:
                    conn.execute(f'LISTEN "{channel}"')
                    with self._lock:
                        self._listening.add(channel)
                ready.set()
        except BaseException:
            with self._lock:
                self._pending[:0] = [(c, r) for c, r in pending if not r.is_set()]
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._url, autocommit=True)
        conn.add_notify_handler(self._dispatch)
        self.backend_pid = conn.info.backend_pid
        with self._lock:
            channels = sorted(self._listening)
        for channel in channels:
            conn.execute(f'LISTEN "{channel}"')
        return conn

    def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except psycopg.Error as error:
                logger.warning("cannot listen for cluster notifications (%s); retrying", type(error).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self.connections += 1
            if self.connections > 1:
                self._resync_all()
            backoff = BACKOFF_FIRST
            try:
                self._serve(conn)
            except psycopg.Error as error:
                logger.warning("lost the notification connection (%s); reconnecting", type(error).__name__)
            finally:
                try:
                    conn.close()
                except psycopg.Error:
                    pass

    def _serve(self, conn: psycopg.Connection[Any]) -> None:
        """Read notifications until asked to stop; a dropped connection raises."""
        self._listen_pending(conn)
        fileno = conn.fileno()
        while not self._stop.is_set():
            readable, _, _ = select.select([fileno, self._wake_r], [], [], IDLE_CHECK)
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)
                if self._stop.is_set():
                    return
                self._listen_pending(conn)
            # Any statement reads what arrived and hands notifications to `_dispatch`; on an idle
            # timeout it also finds out whether the connection is still alive.
            conn.execute("")

    # -- lifetime --------------------------------------------------------------------------------------

    def acquire(self) -> Listener:
        """Count one more user of the shared listener."""
        with _LISTENERS_LOCK:
            self._users += 1
        return self

    def release(self) -> None:
        """Count one user fewer; the last one stops the thread and closes the connections."""
        with _LISTENERS_LOCK:
            self._users -= 1
            if self._users > 0:
                return
            if _LISTENERS.get(self._url) is self:
                del _LISTENERS[self._url]
        self.close()

    def close(self) -> None:
        """Stop the thread and close the connections (use `release` for the shared listener)."""
        self._stop.set()
        self._wake()
        self._thread.join(timeout=10)
        with self._sender_lock:
            self._close_sender()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


_LISTENERS: dict[str, Listener] = {}
_LISTENERS_LOCK = threading.Lock()


def listener(url: str) -> Listener:
    """Return the process's listener for the database at ``url`` (started on first use).

    Give it back with `Listener.release` when done.
    """
    with _LISTENERS_LOCK:
        found = _LISTENERS.get(url)
        if found is None:
            found = _LISTENERS[url] = Listener(url)
        found._users += 1
        return found
