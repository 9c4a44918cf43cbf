"""Schema migrations and the offline copy of a data directory's metadata to PostgreSQL.

``tilde-server migrate`` applies the missing schema migrations of every store (the server also does this at
start-up; the command lets an upgrade run them before any replica starts). ``tilde-server copy-metadata``
copies the SQLite databases of a data directory (registry, engine metadata, triggers) into the schemas of an
empty PostgreSQL database, table by table in one transaction per database, and checks the row counts. Blobs
stay where they are: a server started with ``--data-dir`` on the same directory and ``--database-url`` on the
target finds every object.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tilde.server._db import (
    DATABASE_FILES,
    Connection,
    Location,
    Migration,
    PostgresDatabase,
    apply_migrations,
    connect_sqlite,
    database_location,
    schema_version,
    table_names,
)

__all__ = ["CopyReport", "cluster_migrations", "copy_metadata", "migrate_all", "store_migrations"]

#: Rows sent per ``executemany`` while copying.
COPY_BATCH = 1000


def store_migrations() -> dict[str, list[tuple[str, Sequence[Migration]]]]:
    """Return, for each database (a key of `DATABASE_FILES`), its stores' ``(component, migrations)``."""
    from tilde.server.connectors.store import _MIGRATIONS as CONNECTORS
    from tilde.server.registry import _SCHEMA as REGISTRY
    from tilde.server.registry_principals import registry_migrations
    from tilde.server.sandbox.triggers import TRIGGER_MIGRATIONS
    from tilde.server.secret_store import _SCHEMA as SECRETS
    from tilde.server.storage.schema import METADATA_COMPONENT, METADATA_MIGRATIONS

    def initial(schema: str) -> Sequence[Migration]:
        return (Migration(1, "initial schema", schema),)

    return {
        "registry": [
            ("registry", registry_migrations(REGISTRY)),
            ("secrets", initial(SECRETS)),
            ("connectors", CONNECTORS),
        ],
        "meta": [(METADATA_COMPONENT, METADATA_MIGRATIONS)],
        "triggers": [("triggers", TRIGGER_MIGRATIONS)],
    }


@contextmanager
def _write(location: Location) -> Iterator[Connection]:
    """One write transaction on a SQLite file or a PostgreSQL schema (migrations serialised on both)."""
    if isinstance(location, PostgresDatabase):
        from tilde.server._db_postgres import shared_pool

        scripts = "\n".join(
            step.apply
            for steps in store_migrations().values()
            for _, migrations in steps
            for step in migrations
            if isinstance(step.apply, str)
        )
        pool = shared_pool(location, scripts)
        try:
            with pool.transaction(migrate_lock=True) as conn:
                yield conn
        finally:
            pool.release()
        return
    db = connect_sqlite(Path(location))
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


def cluster_migrations(
    database_url: str,
) -> list[tuple[PostgresDatabase, list[tuple[str, Sequence[Migration]]]]]:
    """Return the stores that exist on PostgreSQL only, by schema: the cluster's and the IAM generation."""
    from tilde.server.cluster import CLUSTER_SCHEMA
    from tilde.server.cluster.housekeeping import _MIGRATIONS as JOBS
    from tilde.server.cluster.nodes import _MIGRATIONS as NODES
    from tilde.server.cluster.sandboxes import _MIGRATIONS as SANDBOXES
    from tilde.server.cluster.settings import _MIGRATIONS as SETTINGS
    from tilde.server.iam._generation import _MIGRATIONS as IAM_GENERATION

    registry = database_location(Path(), database_url, "registry")
    assert isinstance(registry, PostgresDatabase)
    cluster = [
        ("cluster_settings", SETTINGS),
        ("cluster_nodes", NODES),
        ("cluster_sandboxes", SANDBOXES),
        ("cluster_jobs", JOBS),
    ]
    return [
        (registry, [("iam_generation", IAM_GENERATION)]),
        (PostgresDatabase(database_url, CLUSTER_SCHEMA), cluster),
    ]


def migrate_all(data_dir: Path, database_url: str | None) -> dict[str, int]:
    """Apply every store's missing migrations; return each component's schema version afterwards.

    On PostgreSQL this includes the cluster's own tables (nodes, shared sandbox records and settings,
    housekeeping jobs) and the registry's shared IAM generation, which a server on SQLite does not have.

    Args:
        data_dir: The data directory (its SQLite files are migrated when ``database_url`` is None).
        database_url: A PostgreSQL URL, or None.

    """
    versions: dict[str, int] = {}
    for name, stores in store_migrations().items():
        with _write(database_location(data_dir, database_url, name)) as conn:
            for component, migrations in stores:
                apply_migrations(conn, component, migrations)
                versions[component] = schema_version(conn, component)
    if database_url:
        for location, stores in cluster_migrations(database_url):
            with _write(location) as conn:
                for component, migrations in stores:
                    apply_migrations(conn, component, migrations)
                    versions[component] = schema_version(conn, component)
    return versions


@dataclass(frozen=True)
class CopyReport:
    """What `copy_metadata` copied: rows per ``database.table``."""

    rows: dict[str, int]


def _columns(source: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in source.execute(f"PRAGMA table_info({table})")]


def copy_metadata(
    data_dir: Path, database_url: str, *, progress: Callable[[str, int], None] | None = None
) -> CopyReport:
    """Copy the SQLite metadata of ``data_dir`` into an empty PostgreSQL database.

    Both sides are first brought to the current schema; the target's tables must be empty (a copy never
    merges). Each database is copied in one transaction, so a failed copy leaves nothing half-done.

    Args:
        data_dir: A data directory no server is running on.
        database_url: The target PostgreSQL database.
        progress: Called with ``("database.table", rows)`` after each table.

    Raises:
        ValueError: A target table already has rows, or the data directory has no databases.

    """
    data_dir = Path(data_dir)
    if not any((data_dir / file).exists() for file in DATABASE_FILES.values()):
        raise ValueError(f"{data_dir} holds no tilde-server databases")
    migrate_all(data_dir, None)
    counts: dict[str, int] = {}
    for name, stores in store_migrations().items():
        source = connect_sqlite(data_dir / DATABASE_FILES[name])
        try:
            with _write(PostgresDatabase(database_url, f"tilde_{name}")) as target:
                for component, migrations in stores:
                    apply_migrations(target, component, migrations)
                for table in sorted(table_names(source) - {"schema_version"}):
                    counts[f"{name}.{table}"] = _copy_table(source, target, table)
                    if progress is not None:
                        progress(f"{name}.{table}", counts[f"{name}.{table}"])
        finally:
            source.close()
    return CopyReport(counts)


def _copy_table(source: sqlite3.Connection, target: Connection, table: str) -> int:
    row = target.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    if row is not None and int(row[0]) > 0:
        raise ValueError(f"the target table {table} is not empty: copy into a new database")
    columns = _columns(source, table)
    names = ", ".join(columns)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})"
    try:
        # Insertion order, which lists that follow SQLite's rowid (triggers) keep on PostgreSQL.
        cursor = source.execute(f"SELECT {names} FROM {table} ORDER BY rowid")
    except sqlite3.OperationalError:  # a WITHOUT ROWID table: its primary key orders it
        cursor = source.execute(f"SELECT {names} FROM {table}")
    copied = 0
    while True:
        batch: list[Any] = [tuple(values) for values in cursor.fetchmany(COPY_BATCH)]
        if not batch:
            break
        target.executemany(insert, batch)
        copied += len(batch)
    row = target.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    if row is None or int(row[0]) != copied:
        raise RuntimeError(f"copied {copied} rows of {table} but the target holds {row and row[0]}")
    return copied
