"""API keys stored as salted hashes (legacy unsalted rows still work), and ``tilde-server user …``."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from secrets_helpers import make_agent

from tilde.server import LocalServer
from tilde.server.config import DATABASE_URL_FILE

REGISTRY = "registry.sqlite3"


def _rows(data_dir: Path) -> list[dict[str, Any]]:
    url_file = data_dir / DATABASE_URL_FILE
    if url_file.exists():  # a server on PostgreSQL (the suite's second backend)
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(url_file.read_text().strip(), row_factory=dict_row) as conn:
            return list(conn.execute("SELECT * FROM tilde_registry.api_keys").fetchall())
    with sqlite3.connect(data_dir / REGISTRY) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(row) for row in db.execute("SELECT * FROM api_keys")]
    db.close()
    return rows


def _status(server: LocalServer, token: str) -> int:
    response = httpx.get(
        f"{server.endpoint_url}/api/v1/organizations",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return response.status_code


def test_new_keys_carry_a_lookup_id_and_are_stored_salted(
    api: httpx.Client, server: LocalServer, org_name: str
) -> None:
    agent = make_agent(api, org_name, "keyed")
    token = agent["token"]
    match = re.fullmatch(r"tak-([0-9a-f]{16})\.[A-Za-z0-9_-]{43}", token)
    assert match, token
    [row] = [r for r in _rows(server.data_dir) if r["lookup_id"] == match.group(1)]
    assert row["token_hint"] == token[-4:]
    assert row["salt"]
    assert row["token_hash"] == hashlib.sha256(bytes.fromhex(row["salt"]) + token.encode()).hexdigest()
    assert row["token_hash"] != hashlib.sha256(token.encode()).hexdigest()
    listed = api.get(f"/organizations/{org_name}/agents/keyed/auth/keys").json()["results"]
    assert [k["token_hint"] for k in listed] == [token[-4:]]
    assert "token" not in listed[0]
    assert _status(server, token) == 200
    assert (
        _status(server, token[:-1] + ("A" if token[-1] != "A" else "B")) == 401
    )  # same lookup id, wrong secret
    revoked = api.delete(f"/organizations/{org_name}/agents/keyed/auth/keys/{listed[0]['id']}")
    assert revoked.status_code == 204
    assert _status(server, token) == 401


# -- databases written before salting --------------------------------------------------------------

_OLD_SCHEMA = """
CREATE TABLE users (
    id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, full_name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY, principal_type TEXT NOT NULL, principal_id TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '', token_hash TEXT NOT NULL UNIQUE, token_hint TEXT NOT NULL,
    created_at TEXT NOT NULL, last_used_at TEXT, revoked_at TEXT);
"""


def _legacy_database(data_dir: Path, keys: dict[str, str]) -> None:
    """A registry as the previous release wrote it: unsalted SHA-256 hashes, no salt or lookup columns."""
    data_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(data_dir / REGISTRY)
    db.executescript(_OLD_SCHEMA)
    for number, (username, token) in enumerate(keys.items()):
        user_id = f"00000000-0000-7000-8000-00000000000{number}"
        db.execute("INSERT INTO users VALUES (?, ?, '', '', '2026-01-01T00:00:00Z')", (user_id, username))
        db.execute(
            "INSERT INTO api_keys (id, principal_type, principal_id, name, token_hash, token_hint, "
            "created_at) VALUES (?, 'user', ?, ?, ?, ?, '2026-01-01T00:00:00Z')",
            (f"key-{number}", user_id, username, hashlib.sha256(token.encode()).hexdigest(), token[-4:]),
        )
    db.commit()
    db.close()


def test_legacy_unsalted_keys_keep_working_and_are_rehashed(tmp_path: Path) -> None:
    admin_key = "tuk-" + "a" * 43
    user_key = "tuk-" + "b" * 43
    _legacy_database(tmp_path, {"admin": admin_key, "olduser": user_key})
    with LocalServer(data_dir=tmp_path, admin_key=admin_key) as server:
        assert _status(server, admin_key) == 200
        assert _status(server, user_key) == 200
        assert _status(server, "tuk-" + "c" * 43) == 401
        rows = {row["id"]: row for row in _rows(tmp_path)}
        for key_id, token in (("key-0", admin_key), ("key-1", user_key)):
            row = rows[key_id]
            assert row["salt"], "a legacy row is re-hashed with a salt on first use"
            assert row["token_hash"] != hashlib.sha256(token.encode()).hexdigest()
        assert len(rows) == 2  # the admin key was recognised, not stored a second time
        assert _status(server, user_key) == 200  # and still works salted
    with LocalServer(data_dir=tmp_path, admin_key=admin_key) as server:
        assert _status(server, admin_key) == 200
        assert _status(server, user_key) == 200


# -- tilde-server user create / list ---------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tilde.server", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def running(tmp_path: Path) -> Iterator[LocalServer]:
    with LocalServer(data_dir=tmp_path / "data") as server:
        yield server


def test_user_create_prints_only_the_key_which_works_at_once(running: LocalServer) -> None:
    data_dir = str(running.data_dir)
    created = _cli(
        "user",
        "create",
        "alice",
        "--email",
        "alice@example.com",
        "--full-name",
        "Alice A",
        "--data-dir",
        data_dir,
    )
    assert created.returncode == 0, created.stderr
    [key] = created.stdout.splitlines()
    assert re.fullmatch(r"tuk-[0-9a-f]{16}\.[A-Za-z0-9_-]{43}", key)
    assert len(created.stderr.strip().splitlines()) == 1
    assert key not in created.stderr
    assert _status(running, key) == 200  # the running server sees the new user at once

    with httpx.Client(
        base_url=running.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {running.api_key}"}
    ) as admin:
        assert admin.post("/organizations", json={"name": "alices-org"}).status_code == 201
        added = admin.post("/organizations/alices-org/members", json={"username": "alice"})
        assert added.status_code == 201, added.text
        assert added.json()["email"] == "alice@example.com"
        assert added.json()["full_name"] == "Alice A"
    mine = httpx.get(
        f"{running.endpoint_url}/api/v1/organizations", headers={"Authorization": f"Bearer {key}"}
    ).json()["results"]
    assert [org["name"] for org in mine] == ["alices-org"]

    listed = _cli("user", "list", env={"TILDE_SERVER_DATA_DIR": data_dir})
    assert listed.returncode == 0, listed.stderr
    lines = {line.split("\t")[0]: line.split("\t") for line in listed.stdout.splitlines()}
    assert set(lines) == {"admin", "alice"}
    assert lines["alice"][2] == "alice@example.com"
    assert key not in listed.stdout
    assert running.api_key not in listed.stdout
    assert "tuk-" not in listed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alice"], "already exists"),
        (["admin"], "already exists"),
        (["bad name!"], "must match"),
        (["bob", "--email", "not-an-address"], "e-mail"),
    ],
)
def test_user_create_refuses_taken_and_invalid_names(
    running: LocalServer, args: list[str], message: str
) -> None:
    if args[0] == "alice":
        assert _cli("user", "create", "alice", "--data-dir", str(running.data_dir)).returncode == 0
    failed = _cli("user", "create", *args, "--data-dir", str(running.data_dir))
    assert failed.returncode == 1
    assert failed.stdout == ""
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert message in line


def test_a_user_added_by_name_before_it_existed_gets_its_first_key(running: LocalServer) -> None:
    # Members are added by name and this server creates the user then; `user create` still gives it a key.
    with httpx.Client(
        base_url=running.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {running.api_key}"}
    ) as admin:
        assert admin.post("/organizations", json={"name": "early-org"}).status_code == 201
        assert admin.post("/organizations/early-org/members", json={"username": "early"}).status_code == 201
    created = _cli("user", "create", "early", "--data-dir", str(running.data_dir))
    assert created.returncode == 0, created.stderr
    [key] = created.stdout.splitlines()
    assert "existing user" in created.stderr
    mine = httpx.get(
        f"{running.endpoint_url}/api/v1/organizations", headers={"Authorization": f"Bearer {key}"}
    ).json()["results"]
    assert [org["name"] for org in mine] == ["early-org"]
    again = _cli("user", "create", "early", "--data-dir", str(running.data_dir))
    assert again.returncode == 1
    assert "already exists" in again.stderr
