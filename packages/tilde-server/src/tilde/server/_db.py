"""The server's databases: SQLite files by default, schemas of a PostgreSQL database given a URL.

The server keeps three databases: the registry (with secrets and connectors), the storage engine's metadata
and the triggers. Embedded, each is a SQLite file in the data directory; with a database URL each is a schema
of one PostgreSQL database (``tilde_registry``, ``tilde_meta``, ``tilde_triggers``), so tables of the same
name (both the registry and the engine have ``uploads``) stay apart as they do in separate files.

Stores write their SQL once, in SQLite's dialect; `tilde.server._db_postgres` rewrites it for PostgreSQL (the
only place that knows the differences). Schemas are versioned: each store lists its `Migration` steps and
`apply_migrations` runs the missing ones at start-up, recording them in a ``schema_version`` table.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Union, cast

from tilde.server._private import private_database

__all__ = [
    "DATABASE_FILES",
    "Connection",
    "DatabaseUnavailable",
    "IntegrityError",
    "Location",
    "Migration",
    "PostgresDatabase",
    "SqlStore",
    "SqliteStore",
    "add_column",
    "apply_migrations",
    "database_location",
    "page_of",
    "schema_version",
    "table_names",
]

#: A unique, primary-key or foreign-key constraint failed, on either backend (PostgreSQL's errors are
#: raised as this class too, so stores catch one exception).
IntegrityError = sqlite3.IntegrityError


class DatabaseUnavailable(RuntimeError):
    """The configured database cannot be reached or dropped the connection (the message never has the URL).

    The API answers it with ``503 database_unavailable`` and ``Retry-After``.
    """


#: The server's databases and their file names in the data directory (embedded backend).
DATABASE_FILES = {"registry": "registry.sqlite3", "meta": "meta.sqlite3", "triggers": "triggers.sqlite3"}


@dataclass(frozen=True)
class PostgresDatabase:
    """One of the server's databases on PostgreSQL: a schema of the database at ``url``.

    Attributes:
        url: A ``postgresql://`` connection URL (credentials included; never logged).
        schema: The schema holding this database's tables.

    """

    url: str
    schema: str

    def __repr__(self) -> str:
        return f"PostgresDatabase(schema={self.schema!r})"


#: Where a store keeps its tables: a SQLite file or a PostgreSQL schema.
Location = Union[Path, PostgresDatabase]  # noqa: UP007 (a runtime alias on Python 3.10)


def database_location(data_dir: Path, database_url: str | None, name: str) -> Location:
    """Return where the database ``name`` (a key of `DATABASE_FILES`) lives.

    Args:
        data_dir: The data directory (SQLite files live there).
        database_url: A PostgreSQL URL, or None for the embedded SQLite files.
        name: ``registry``, ``meta`` or ``triggers``.

    """
    if database_url:
        return PostgresDatabase(database_url, f"tilde_{name}")
    return Path(data_dir) / DATABASE_FILES[name]


class Cursor(Protocol):
    """What a statement returns on either backend."""

    rowcount: int

    def fetchone(self) -> Any:
        """Return the next row or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Return the remaining rows."""
        ...

    def __iter__(self) -> Iterator[Any]:
        """Iterate the remaining rows."""
        ...


class Connection(Protocol):
    """A connection inside one transaction, taking SQLite-dialect SQL (``?`` and ``:name`` parameters).

    Rows can be indexed by position and by column name, and ``dict(row)`` works, on both backends.
    """

    def execute(self, sql: str, parameters: Any = ..., /) -> Any:
        """Run one statement."""
        ...

    def executescript(self, script: str, /) -> Any:
        """Run several statements without parameters."""
        ...

    def executemany(self, sql: str, rows: Any, /) -> Any:
        """Run one statement for each parameter row."""
        ...


def page_of(rows: Sequence[Any], limit: int) -> tuple[list[Any], bool]:
    """Split ``limit + 1`` fetched rows into ``(page, has_more)``."""
    return list(rows[:limit]), len(rows) > limit


# Migrations


@dataclass(frozen=True)
class Migration:
    """One step of a store's schema history.

    Attributes:
        version: Its number (1, 2, … in order).
        description: What it changes.
        apply: Either a script of SQLite-dialect DDL (rewritten for PostgreSQL) or a function given the
            connection and the dialect name (``sqlite`` or ``postgres``). Steps are idempotent: databases made
            before versioning existed run every step on tables that may already have the change.

    """

    version: int
    description: str
    apply: str | Callable[[Connection, str], None]


def _dialect(conn: Any) -> str:
    return "sqlite" if isinstance(conn, sqlite3.Connection) else "postgres"


def table_names(conn: Connection) -> set[str]:
    """Return the names of the tables of the connection's database (PostgreSQL: of its current schema)."""
    if _dialect(conn) == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    return {str(row[0]) for row in conn.execute(sql)}


def add_column(conn: Connection, table: str, column: str, definition: str) -> bool:
    """Add a column to a table unless it has it already (a migration helper for both backends).

    Returns:
        Whether the column was added.

    """
    if _dialect(conn) == "postgres":
        sql = "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        columns = {str(row[0]) for row in conn.execute(sql + " AND table_name = ?", (table,))}
    else:
        columns = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}
    if column in columns:
        return False
    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    return True


_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (component TEXT NOT NULL, version INTEGER NOT NULL,"
    " description TEXT NOT NULL, applied_us INTEGER NOT NULL, PRIMARY KEY (component, version))"
)


def schema_version(conn: Connection, component: str) -> int:
    """Return the latest migration applied for ``component`` (0 when none or no version table)."""
    if "schema_version" not in table_names(conn):
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version WHERE component = ?", (component,)).fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def apply_migrations(
    conn: Connection, component: str, migrations: Sequence[Migration], *, target: int | None = None
) -> list[int]:
    """Run the migrations of ``component`` not yet applied, inside the caller's write transaction.

    The caller's transaction serialises concurrent start-ups (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an
    advisory lock taken by `tilde.server._db_postgres`), so two processes never apply the same step.

    Args:
        conn: A connection in a write transaction.
        component: The store's name in ``schema_version`` (several stores can share a database).
        migrations: Every step, in version order.
        target: Stop after this version (tests build older schemas with it); None applies all.

    Returns:
        The versions applied now.

    """
    import time

    dialect = _dialect(conn)
    conn.execute(_VERSION_TABLE)
    current = schema_version(conn, component)
    applied: list[int] = []
    for step in migrations:
        if step.version <= current or (target is not None and step.version > target):
            continue
        if isinstance(step.apply, str):
            for statement in _statements(step.apply):
                conn.execute(statement)
        else:
            step.apply(conn, dialect)
        conn.execute(
            "INSERT INTO schema_version (component, version, description, applied_us) VALUES (?, ?, ?, ?)",
            (component, step.version, step.description, int(time.time() * 1_000_000)),
        )
        applied.append(step.version)
    return applied


def _statements(script: str) -> list[str]:
    """Split a DDL script into statements: comments dropped, then split on semicolons (no literal has one)."""
    text = re.sub(r"--[^\n]*", "", script)
    return [part.strip() for part in text.split(";") if part.strip()]


# Stores


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """Open a SQLite file (made private) in WAL mode, in autocommit mode for explicit transactions."""
    db = sqlite3.connect(str(private_database(Path(path))), check_same_thread=False, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")
    return db


class SqlStore:
    """Base for stores kept in one database (a SQLite file or a PostgreSQL schema), safe from any thread.

    On SQLite one connection and one lock serve every call. On PostgreSQL each call borrows a connection from
    a pool shared by the stores of the same database; `_one` and `_all` run as single statements and
    `_tx` as one READ COMMITTED transaction.

    Args:
        location: The database file, or a `PostgresDatabase`.
        schema: ``CREATE … IF NOT EXISTS`` statements run on open (version 1 when ``migrations`` is None).
        migrations: The store's schema history; ``schema`` is ignored when given.
        component: The store's name in ``schema_version``.

    """

    dialect: str

    def __init__(
        self,
        location: Location,
        schema: str = "",
        *,
        migrations: Sequence[Migration] | None = None,
        component: str | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._pg: Any = None
        steps = list(migrations) if migrations is not None else [Migration(1, "initial schema", schema)]
        name = component or type(self).__name__
        if isinstance(location, PostgresDatabase):
            from tilde.server._db_postgres import shared_pool

            self.dialect = "postgres"
            scripts = "\n".join(step.apply for step in steps if isinstance(step.apply, str))
            self._pg = shared_pool(location, scripts)
            with self._pg.transaction(migrate_lock=True) as conn:
                apply_migrations(conn, name, steps)
            return
        self.dialect = "sqlite"
        self._db = connect_sqlite(Path(location))
        with self._tx() as conn:
            apply_migrations(conn, name, steps)

    def close(self) -> None:
        """Close the database (PostgreSQL: give back this store's share of the pool)."""
        if self._pg is not None:
            self._pg.release()
            return
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """Run a write transaction (typed as SQLite's connection; PostgreSQL's wrapper behaves the same)."""
        if self._pg is not None:
            with self._pg.transaction() as conn:
                yield cast("sqlite3.Connection", conn)
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _schema_tx(self) -> Iterator[sqlite3.Connection]:
        """Run a transaction that changes the schema outside a migration (triggers, functions).

        On PostgreSQL it holds the schema's migration lock, as migrations do: replicas starting at the same
        moment would otherwise replace the same catalog rows at once ("tuple concurrently updated").
        """
        if self._pg is not None:
            with self._pg.transaction(migrate_lock=True) as conn:
                yield cast("sqlite3.Connection", conn)
            return
        with self._tx() as conn:
            yield conn

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        if self._pg is not None:
            return cast("sqlite3.Row | None", self._pg.one(sql, args))
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, args).fetchone()
            return row

    def _all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        if self._pg is not None:
            return cast("list[sqlite3.Row]", self._pg.all(sql, args))
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def _page(self, sql: str, *args: Any, limit: int) -> tuple[list[sqlite3.Row], bool]:
        """Run ``sql``, whose last parameter is its ``LIMIT``, for one page: ``(rows, has_more)``."""
        return page_of(self._all(sql, *args, limit + 1), limit)


#: The former name of `SqlStore`.
SqliteStore = SqlStore
