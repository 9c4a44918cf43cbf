"""Settings every replica of a cluster must share, kept in PostgreSQL (table ``cluster_settings``).

A server on SQLite keeps its upload secret in its data directory (`tilde.server.config`). Replicas sharing
one PostgreSQL database must agree instead: an upload URL signed by one replica is finalized by whichever
replica the load balancer picks, and a request one node forwards to another carries a header signed with a
key both know. So in cluster mode:

- the **upload secret** and the **cluster secret** (the key of signed internal requests) are rows of
  ``cluster_settings`` in the ``tilde_cluster`` schema, created by the first replica that starts
  (``INSERT … ON CONFLICT DO NOTHING``, then read back: replicas starting together all end up with the row
  that won). The first replica seeds the upload secret from its data directory's file when it has one, so
  upload URLs handed out by a server that becomes a cluster's first replica stay valid.
- the **master key** (``TILDE_SERVER_MASTER_KEY``) never leaves the replicas; the database keeps a check
  value, an HMAC of a fixed text under the key, from which the key cannot be recovered. A replica none of
  whose keys matches the recorded check refuses to start (`MasterKeyMismatch`): with a different key it could
  not open the secrets the other replicas sealed. A replica whose first (sealing) key matches no longer
  recorded check but whose older key does (a rotation in progress) records its new key's check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tilde.server._db import Migration, PostgresDatabase, SqlStore
from tilde.server.cluster import CLUSTER_SCHEMA

__all__ = [
    "ClusterSettingsError",
    "MasterKeyMismatch",
    "SettingsStore",
    "SharedSecrets",
    "load_shared_secrets",
    "master_key_check",
    "record_master_key",
]

#: Names of the shared settings.
UPLOAD_SECRET = "upload_secret"
CLUSTER_SECRET = "cluster_secret"
MASTER_KEY_CHECK = "master_key_check"
_CHECK_TEXT = b"tilde-server master key check, version 1"
_SECRET_BYTES = 32

_MIGRATIONS = [
    Migration(
        1,
        "settings shared by every replica",
        "CREATE TABLE IF NOT EXISTS cluster_settings ("
        " name TEXT PRIMARY KEY, value BLOB NOT NULL, updated_us INTEGER NOT NULL);",
    ),
]


class ClusterSettingsError(ValueError):
    """A replica's own settings contradict the cluster's; it must not start (the message is one line)."""


class MasterKeyMismatch(ClusterSettingsError):
    """None of this replica's master keys is the key the cluster's other replicas use."""


@dataclass(frozen=True)
class SharedSecrets:
    """The secrets every replica of a cluster uses.

    Attributes:
        upload_secret: Signs upload URLs (``app.state.upload_secret``).
        cluster_secret: Signs requests forwarded from one node to another (``app.state.cluster.secret``).

    """

    upload_secret: bytes
    cluster_secret: bytes

    def __repr__(self) -> str:
        return "SharedSecrets(...)"


def master_key_check(key: bytes) -> bytes:
    """Return the check value recorded for a master key (an HMAC under the key; it does not reveal it)."""
    return hmac.new(key, _CHECK_TEXT, hashlib.sha256).digest()


class SettingsStore(SqlStore):
    """The ``cluster_settings`` table: named values, each created once for the whole cluster.

    Args:
        database: The cluster's schema of the shared PostgreSQL database.

    """

    def __init__(self, database: PostgresDatabase) -> None:
        super().__init__(database, migrations=_MIGRATIONS, component="cluster_settings")

    def get_or_create(self, name: str, make: Callable[[], bytes]) -> bytes:
        """Return the setting ``name``, storing ``make()`` first when nobody has (race-free).

        Concurrent callers all get the value of the one insert that won.
        """
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO cluster_settings (name, value, updated_us) VALUES (?, ?, ?)",
                (name, make(), _now_us()),
            )
            row = db.execute("SELECT value FROM cluster_settings WHERE name = ?", (name,)).fetchone()
        return bytes(row[0])

    def replace_if(self, name: str, expected: bytes, value: bytes) -> bool:
        """Set ``name`` to ``value`` when it still holds ``expected``; return whether it did."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE cluster_settings SET value = ?, updated_us = ? WHERE name = ? AND value = ?",
                (value, _now_us(), name, expected),
            )
            return cur.rowcount > 0


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def check_master_keys(store: SettingsStore, keys: Sequence[bytes]) -> None:
    """Record the master key's check on first start, or refuse keys the cluster does not use.

    Args:
        store: The shared settings.
        keys: This replica's master keys, the sealing one first.

    Raises:
        MasterKeyMismatch: None of ``keys`` is the cluster's master key.

    """
    checks = [master_key_check(key) for key in keys]
    recorded = store.get_or_create(MASTER_KEY_CHECK, lambda: checks[0])
    if not any(hmac.compare_digest(recorded, check) for check in checks):
        raise MasterKeyMismatch(
            "this replica's master key is not the cluster's: set TILDE_SERVER_MASTER_KEY to the key the other"
            " replicas use (the database records a check value of it, never the key)"
        )
    if not hmac.compare_digest(recorded, checks[0]):
        # A rotation: this replica seals with a newer key and still opens the old one's values.
        store.replace_if(MASTER_KEY_CHECK, recorded, checks[0])


def record_master_key(database_url: str, key: bytes) -> None:
    """Record ``key`` as the cluster's master key (after every sealed value was re-sealed under it).

    ``tilde-server rotate-master-key`` calls it, so replicas then started with the new key alone are accepted.
    """
    store = SettingsStore(PostgresDatabase(database_url, CLUSTER_SCHEMA))
    try:
        with store._tx() as db:
            db.execute(
                "REPLACE INTO cluster_settings (name, value, updated_us) VALUES (?, ?, ?)",
                (MASTER_KEY_CHECK, master_key_check(key), _now_us()),
            )
    finally:
        store.close()


def load_shared_secrets(database_url: str, data_dir: Path, master_keys: Sequence[bytes]) -> SharedSecrets:
    """Check the master key against the cluster's and return the secrets every replica shares.

    Args:
        database_url: The cluster's PostgreSQL URL.
        data_dir: This replica's data directory (its upload secret file, if any, seeds the shared one).
        master_keys: This replica's master keys (`tilde.server.crypto.load_master_keys`).

    Raises:
        MasterKeyMismatch: This replica's master key is not the cluster's.
        tilde.server._db.DatabaseUnavailable: PostgreSQL cannot be reached.

    """
    store = SettingsStore(PostgresDatabase(database_url, CLUSTER_SCHEMA))
    try:
        check_master_keys(store, master_keys)
        upload = store.get_or_create(UPLOAD_SECRET, lambda: _local_upload_secret(data_dir))
        cluster = store.get_or_create(CLUSTER_SECRET, lambda: secrets.token_bytes(_SECRET_BYTES))
    finally:
        store.close()
    return SharedSecrets(upload_secret=upload, cluster_secret=cluster)


def _local_upload_secret(data_dir: Path) -> bytes:
    """Return the data directory's upload secret if it has one (URLs it signed stay valid), else a new one."""
    from tilde.server.config import UPLOAD_SECRET_FILE

    path = Path(data_dir) / UPLOAD_SECRET_FILE
    if path.exists():
        data = path.read_bytes()
        if len(data) >= _SECRET_BYTES:
            return data
    return secrets.token_bytes(_SECRET_BYTES)
