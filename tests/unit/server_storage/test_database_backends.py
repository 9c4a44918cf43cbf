"""The database layer: SQLite's SQL rewritten for PostgreSQL; the embedded default never loads its driver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tilde.server._db import PostgresDatabase, database_location
from tilde.server._db_postgres import Row, primary_keys, translate
from tilde.server.storage.schema import METADATA_SCHEMA_V1

KEYS = tuple(sorted(primary_keys(METADATA_SCHEMA_V1).items()))


def test_primary_keys_are_read_from_the_schema() -> None:
    keys = dict(KEYS)
    assert keys["sessions"] == ("id",)
    assert keys["staged"] == ("session_id", "path")
    assert keys["versions"] == ("repo_id", "path", "born_seq")


def test_replace_into_becomes_an_upsert_on_the_primary_key() -> None:
    sql = translate("REPLACE INTO staged (session_id, path, size) VALUES (?, ?, ?)", KEYS)
    assert sql == (
        "INSERT INTO staged (session_id, path, size) VALUES (%s, %s, %s)"
        " ON CONFLICT (session_id, path) DO UPDATE SET size = EXCLUDED.size"
    )


def test_replace_into_a_table_without_a_known_key_is_refused() -> None:
    with pytest.raises(ValueError, match="primary key"):
        translate("INSERT OR REPLACE INTO mystery (a) VALUES (?)", KEYS)


def test_insert_or_ignore_goes_before_returning() -> None:
    sql = translate("INSERT OR IGNORE INTO repos (repo_id) VALUES (?) RETURNING repo_id", KEYS)
    assert sql == "INSERT INTO repos (repo_id) VALUES (%s) ON CONFLICT DO NOTHING RETURNING repo_id"


def test_parameters_and_percent_signs() -> None:
    sql = "SELECT x FROM t INDEXED BY t_idx WHERE a = :sid AND b LIKE 'a%:b?' AND c = ? AND d % 2 = 0"
    assert translate(sql) == "SELECT x FROM t WHERE a = %(sid)s AND b LIKE 'a%%:b?' AND c = %s AND d %% 2 = 0"


def test_ddl_uses_byte_order_text_and_64_bit_integers() -> None:
    sql = translate(
        "CREATE TABLE IF NOT EXISTS t (a TEXT PRIMARY KEY, b INTEGER NOT NULL, c BLOB) WITHOUT ROWID"
    )
    assert (
        sql.strip()
        == 'CREATE TABLE IF NOT EXISTS t (a TEXT COLLATE "C" PRIMARY KEY, b BIGINT NOT NULL, c BYTEA)'
    )


def test_rows_read_by_name_position_and_as_dicts() -> None:
    row = Row(("id", "name"), ("1", "x"))
    assert (row[0], row["name"], dict(row)) == ("1", "x", {"id": "1", "name": "x"})


def test_locations(tmp_path: Path) -> None:
    assert database_location(tmp_path, None, "meta") == tmp_path / "meta.sqlite3"
    location = database_location(tmp_path, "postgresql://u:secret@h/db", "registry")
    assert location == PostgresDatabase("postgresql://u:secret@h/db", "tilde_registry")
    assert "secret" not in repr(location)


def test_the_embedded_server_never_imports_the_postgres_driver(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from tilde.server import ServerConfig\n"
        "from tilde.server.app import create_app\n"
        f"create_app(ServerConfig(data_dir={str(tmp_path)!r}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_pool')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
