"""PostgreSQL for the server's stores: connection pools and the one place that rewrites SQLite's SQL.

Imported only when a database URL is configured (psycopg and psycopg_pool are the ``postgres`` extra).

The stores' SQL is SQLite's; `translate` rewrites each statement once (cached) for PostgreSQL:

- parameters: ``?`` becomes ``%s`` and ``:name`` becomes ``%(name)s`` (a literal ``%`` is doubled);
- ``INSERT OR IGNORE`` becomes ``INSERT … ON CONFLICT DO NOTHING``; ``REPLACE INTO`` / ``INSERT OR REPLACE``
  becomes ``INSERT … ON CONFLICT (primary key) DO UPDATE SET`` every other column (the keys come from the
  store's ``CREATE TABLE`` statements);
- ``INDEXED BY`` hints are dropped (the planner picks the index);
- DDL: ``TEXT`` columns get ``COLLATE "C"`` so comparisons, ``ORDER BY`` and range scans follow byte order
  exactly as SQLite's binary collation does (UTF-8 byte order is code point order); ``INTEGER`` becomes
  ``BIGINT`` (sizes, microsecond times and the live-version sentinel 2^62 need 64 bits); ``BLOB`` becomes
  ``BYTEA``; ``WITHOUT ROWID`` goes.

Booleans are stored as integers 0/1 on both backends (Python ``bool`` parameters are sent as integers), and
errors from constraint violations are raised as `tilde.server._db.IntegrityError`.
"""

from __future__ import annotations

import re
import select
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from tilde.server._db import DatabaseUnavailable, IntegrityError, PostgresDatabase

__all__ = ["PgConnection", "Retryable", "Row", "SharedPool", "shared_pool", "translate"]

#: Attempts of a single-statement call that hit a serialisation failure or deadlock.
RETRIES = 5
#: Seconds a store waits for its first connection before giving up.
CONNECT_TIMEOUT = 15.0
#: Connections per pool (one pool per database schema, shared by the stores of that schema).
POOL_MAX = 16


class Row(tuple):  # type: ignore[type-arg]
    """A result row readable by position, by column name and as ``dict(row)``, like ``sqlite3.Row``."""

    _names: tuple[str, ...]

    def __new__(cls, names: tuple[str, ...], values: Sequence[Any]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def keys(self) -> list[str]:
        """Return the column names."""
        return list(self._names)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names.index(key))
        return tuple.__getitem__(self, key)


def _row_factory(cursor: Any) -> Any:
    names = tuple(column.name for column in cursor.description or ())

    def make(values: Sequence[Any]) -> Row:
        return Row(names, values)

    return make


# Translation

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?|(?<!:):[A-Za-z_]\w*|%|[^'\"?:%]+|:")
_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)\s*\((.*?)\)\s*(?:WITHOUT ROWID)?\s*;", re.S | re.I)
_UPSERT = re.compile(r"^\s*(?:INSERT OR REPLACE|REPLACE) INTO (\w+)\s*\(([^)]*)\)", re.I)
_IGNORE = re.compile(r"^\s*INSERT OR IGNORE INTO ", re.I)


def primary_keys(schema: str) -> dict[str, tuple[str, ...]]:
    """Return each table's primary-key columns, read from ``CREATE TABLE`` statements."""
    keys: dict[str, tuple[str, ...]] = {}
    for match in _CREATE.finditer(schema if schema.rstrip().endswith(";") else schema + ";"):
        table, body = match.group(1), match.group(2)
        composite = re.search(r"PRIMARY KEY\s*\(([^)]*)\)", body, re.I)
        if composite:
            keys[table] = tuple(col.strip() for col in composite.group(1).split(","))
            continue
        single = re.search(r"(?:^|,)\s*(\w+)\s+\w+[^,]*?\bPRIMARY KEY\b", body, re.I)
        if single:
            keys[table] = (single.group(1),)
    return keys


def _parameters(sql: str) -> str:
    out: list[str] = []
    for token in _TOKEN.findall(sql):
        if token == "?":
            out.append("%s")
        elif token == "%":
            out.append("%%")
        elif token.startswith("'"):
            out.append(token.replace("%", "%%"))
        elif token.startswith(":") and len(token) > 1:
            out.append(f"%({token[1:]})s")
        else:
            out.append(token)
    return "".join(out)


def _ddl(sql: str) -> str:
    sql = re.sub(r"\bWITHOUT ROWID\b", "", sql, flags=re.I)
    sql = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', sql)
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    return re.sub(r"\bBLOB\b", "BYTEA", sql)


@lru_cache(maxsize=4096)
def translate(sql: str, keys: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> str:
    """Rewrite one SQLite statement for PostgreSQL.

    Args:
        sql: The statement.
        keys: ``(table, primary-key columns)`` pairs, needed for ``REPLACE INTO``.

    """
    head = sql.lstrip()[:16].upper()
    if head.startswith(("CREATE TABLE", "ALTER TABLE")):
        sql = _ddl(sql)
    sql = re.sub(r"\s+INDEXED BY \w+", "", sql, flags=re.I)
    upsert = _UPSERT.match(sql)
    suffix = ""
    if upsert is not None:
        table = upsert.group(1)
        columns = [col.strip() for col in upsert.group(2).split(",")]
        key = dict(keys).get(table)
        if key is None:
            raise ValueError(f"REPLACE INTO {table}: its primary key is unknown")
        rest = [col for col in columns if col not in key]
        updates = ", ".join(f"{col} = EXCLUDED.{col}" for col in rest)
        action = f"DO UPDATE SET {updates}" if rest else "DO NOTHING"
        sql = "INSERT INTO " + sql[upsert.start(1) :]
        suffix = f" ON CONFLICT ({', '.join(key)}) {action}"
    elif _IGNORE.match(sql):
        sql = _IGNORE.sub("INSERT INTO ", sql, count=1)
        suffix = " ON CONFLICT DO NOTHING"
    if suffix:
        returning = re.search(r"\sRETURNING\s", sql, re.I)
        sql = sql[: returning.start()] + suffix + sql[returning.start() :] if returning else sql + suffix
    return _parameters(sql)


def _params(parameters: Any) -> Any:
    if isinstance(parameters, Mapping):
        return {key: int(value) if isinstance(value, bool) else value for key, value in parameters.items()}
    return tuple(int(value) if isinstance(value, bool) else value for value in parameters)


class PgConnection:
    """A pooled connection inside one transaction, taking the stores' SQLite-dialect SQL."""

    def __init__(self, conn: psycopg.Connection[Any], keys: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
        self.conn = conn
        self._keys = keys

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        """Run one statement (translated), returning its cursor."""
        try:
            # Parameters always go along (even none), so the doubled ``%`` of the translation is undone.
            return self.conn.execute(translate(sql, self._keys), _params(parameters))
        except psycopg.errors.IntegrityError as error:
            raise IntegrityError(str(error).splitlines()[0]) from None
        except _RETRYABLE as error:
            raise Retryable(
                f"the database aborted a conflicting transaction ({type(error).__name__}); try again"
            ) from None
        except psycopg.OperationalError as error:
            raise _unavailable(error) from None

    def executemany(self, sql: str, rows: Iterable[Any], /) -> None:
        """Run one statement for each parameter row (pipelined by psycopg)."""
        try:
            with self.conn.cursor() as cursor:
                cursor.executemany(translate(sql, self._keys), [_params(row) for row in rows])
        except psycopg.errors.IntegrityError as error:
            raise IntegrityError(str(error).splitlines()[0]) from None

    def executescript(self, script: str, /) -> None:
        """Run every statement of a DDL script."""
        from tilde.server._db import _statements

        for statement in _statements(script):
            self.execute(statement)


_RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)


class Retryable(DatabaseUnavailable):
    """A serialisation failure or deadlock: the transaction was rolled back and may simply run again.

    Single statements are retried here; a write transaction that meets one answers 503 with ``Retry-After``.
    """


#: A pooled connection given back less than this many seconds ago, whose socket has nothing to read, is lent
#: without the liveness round trip: checking every loan cost a fifth of a replica's event loop on small
#: requests. A database that ends a connection (a restart, ``pg_terminate_backend``, an idle timeout) sends a
#: message and closes the socket, which makes it readable, so those are still checked and replaced.
LIVENESS_AFTER_IDLE = 10.0


def _readable(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection's socket has something to read (a pooled one gets nothing unless ended)."""
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.OperationalError):
        return True


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle pooled connection still answers (an empty query: one round trip, nothing run)."""
    try:
        conn.execute("")
    except psycopg.OperationalError:
        return False
    return True


def _unavailable(error: Exception) -> DatabaseUnavailable:
    """Return the 503 error for a database that went away or is overloaded (naming no host or URL)."""
    return DatabaseUnavailable(f"the database is unavailable ({type(error).__name__}); try again")


class SharedPool:
    """A connection pool for one schema, shared by every store of that schema in the process.

    Connections run in autocommit mode with ``search_path`` set to the schema; `transaction` issues its own
    ``BEGIN``/``COMMIT``.
    """

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database
        self.keys: tuple[tuple[str, tuple[str, ...]], ...] = ()
        self._users = 0
        # When each connection was last given back (`_connection` checks only those idle for a while).
        self._returned: weakref.WeakKeyDictionary[psycopg.Connection[Any], float]
        self._returned = weakref.WeakKeyDictionary()
        self._returned_lock = threading.Lock()
        schema = database.schema
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
            raise ValueError(f"invalid schema name {schema!r}")

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.autocommit = True
            conn.row_factory = _row_factory
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(f"SET search_path TO {schema}")

        self._pool = ConnectionPool(
            database.url,
            min_size=1,
            max_size=POOL_MAX,
            configure=configure,
            open=True,
            name=schema,
            timeout=CONNECT_TIMEOUT,
        )
        try:
            self._pool.wait(timeout=CONNECT_TIMEOUT)
        except PoolTimeout:
            self._pool.close()
            host = urlsplit(database.url).hostname or "the local socket"
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {host} within {CONNECT_TIMEOUT:g} s"
            ) from None

    def add_schema(self, schema_sql: str) -> None:
        """Learn the primary keys of tables created by ``schema_sql`` (for ``REPLACE INTO``)."""
        merged = dict(self.keys)
        merged.update(primary_keys(schema_sql))
        self.keys = tuple(sorted(merged.items()))

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Lend a live connection.

        One idle for `LIVENESS_AFTER_IDLE` seconds or more, or whose socket became readable, is checked
        first: one the database dropped while idle (a restart, a fail-over, an idle timeout) is given back
        broken, which makes the pool replace it, and the next one is tried.
        """
        try:
            for _ in range(POOL_MAX + 1):
                with self._pool.connection() as conn:
                    with self._returned_lock:
                        returned = self._returned.get(conn)
                    fresh = returned is not None and time.monotonic() - returned < LIVENESS_AFTER_IDLE
                    if (not fresh or _readable(conn)) and not _alive(conn):
                        continue
                    try:
                        yield conn
                    finally:
                        with self._returned_lock:
                            self._returned[conn] = time.monotonic()
                    return
            raise PoolTimeout("no live connection")
        except PoolTimeout as error:
            raise _unavailable(error) from None
        except _RETRYABLE as error:  # raised by the COMMIT of a transaction
            raise Retryable(
                f"the database aborted a conflicting transaction ({type(error).__name__}); try again"
            ) from None
        except psycopg.OperationalError as error:
            raise _unavailable(error) from None

    @contextmanager
    def transaction(self, *, migrate_lock: bool = False, read_only: bool = False) -> Iterator[PgConnection]:
        """Run a transaction: READ COMMITTED for writes, REPEATABLE READ READ ONLY (one snapshot) for reads.

        Args:
            migrate_lock: Take the schema's migration advisory lock first (start-ups of several processes
                apply migrations one after the other).
            read_only: A read-only snapshot.

        """
        with self._connection() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if read_only else "BEGIN")
            try:
                if migrate_lock:
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext(%s))",
                        ("tilde-migrate:" + self.database.schema,),
                    )
                yield PgConnection(conn, self.keys)
            except BaseException:
                if not conn.closed:
                    try:
                        conn.execute("ROLLBACK")
                    except psycopg.Error:
                        pass
                raise
            conn.execute("COMMIT")

    def _run(self, sql: str, args: Sequence[Any]) -> Any:
        for attempt in range(RETRIES):
            try:
                with self._connection() as conn:
                    return PgConnection(conn, self.keys).execute(sql, args).fetchall()
            except Retryable:
                if attempt == RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def one(self, sql: str, args: Sequence[Any]) -> Any:
        """Run one statement and return its first row (or None)."""
        rows = self._run(sql, args)
        return rows[0] if rows else None

    def all(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """Run one statement and return its rows."""
        return list(self._run(sql, args))

    def acquire(self) -> SharedPool:
        """Count one more store using the pool."""
        with _POOLS_LOCK:
            self._users += 1
        return self

    def release(self) -> None:
        """Count one store fewer; the last one closes the pool."""
        with _POOLS_LOCK:
            self._users -= 1
            if self._users > 0:
                return
            _POOLS.pop(self.database, None)
        self._pool.close()


_POOLS: dict[PostgresDatabase, SharedPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(database: PostgresDatabase, schema_sql: str = "") -> SharedPool:
    """Return the process's pool for ``database`` (opened on first use); `SharedPool.release` it when done."""
    with _POOLS_LOCK:
        pool = _POOLS.get(database)
    if pool is None:
        created = SharedPool(database)
        with _POOLS_LOCK:
            pool = _POOLS.setdefault(database, created)
        if pool is not created:
            created._pool.close()
    if schema_sql:
        pool.add_schema(schema_sql)
    return pool.acquire()
