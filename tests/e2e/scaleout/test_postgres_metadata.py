"""Metadata on PostgreSQL: concurrent commits, schema migrations and the copy from a SQLite data directory.

The server runs in process on a fresh database of the session's PostgreSQL (``postgres_server``); requests go
over real HTTP. The data, admin, IAM and secrets suites run on PostgreSQL too (their ``server_backend``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from commit_race import commit_at_once, stage_racers
from pg_server import PostgresServer

from tilde.core.errors import ConflictError
from tilde.data import Client, Repository
from tilde.server import LocalServer, ServerConfig
from tilde.server._db import DatabaseUnavailable, PostgresDatabase, apply_migrations, connect_sqlite
from tilde.server._db_postgres import shared_pool
from tilde.server.auth import Principal
from tilde.server.config import DATABASE_URL_FILE
from tilde.server.dbtools import migrate_all
from tilde.server.registry import Registry
from tilde.server.sandbox.triggers import TriggerStore
from tilde.server.storage.engine import StorageEngine
from tilde.server.storage.metadata import KeyRange
from tilde.server.storage.schema import METADATA_COMPONENT, METADATA_MIGRATIONS
from tilde.server.storage.types import Actor, NewObject

#: Sessions racing to commit the same path.
RACERS = 50


@pytest.fixture(scope="module")
def pg_tilde(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    """A server whose metadata lives in a fresh PostgreSQL database."""
    config = ServerConfig(
        data_dir=tmp_path_factory.mktemp("pg-server"), database_url=postgres_server.new_database()
    )
    with LocalServer(config=config) as server:
        yield server


@pytest.fixture
def pg_repo(pg_tilde: LocalServer) -> Iterator[Repository]:
    """A fresh repository on the PostgreSQL server."""
    org = f"org-{uuid.uuid4().hex[:10]}"
    _create_org(pg_tilde, org)
    with Client(endpoint_url=pg_tilde.endpoint_url, api_key=pg_tilde.api_key) as client:
        yield client.repositories(org).create(f"repo-{uuid.uuid4().hex[:8]}")


def _create_org(server: LocalServer, name: str) -> None:
    response = httpx.post(
        server.endpoint_url.rstrip("/") + "/api/v1/organizations",
        json={"name": name, "display_name": name},
        headers={"Authorization": f"Bearer {server.api_key}"},
    )
    assert response.status_code == 201, response.text


def _race(repo: Repository, paths: list[str]) -> tuple[list[str], list[ConflictError], list[BaseException]]:
    """Stage one path per session, then commit every session at once from its own thread."""
    return commit_at_once(stage_racers(repo, paths))


def test_fifty_conflicting_commits_have_exactly_one_winner(pg_repo: Repository) -> None:
    with pg_repo.session() as session:
        session.objects.put("shared", b"base")
        session.commit("base")
    commits, conflicts, errors = _race(pg_repo, ["shared"] * RACERS)
    assert errors == []
    assert len(commits) == 1
    assert len(conflicts) == RACERS - 1
    history = list(pg_repo.commits.list())
    assert [commit.message for commit in history][1:] == ["base"]
    winner = history[0].message
    assert pg_repo.commits.get(history[0].id).objects.get("shared").read() == winner.encode()


def test_fifty_disjoint_commits_all_land_in_one_line(pg_repo: Repository) -> None:
    commits, conflicts, errors = _race(pg_repo, [f"path-{number}" for number in range(RACERS)])
    assert (errors, conflicts) == ([], [])
    assert len(commits) == RACERS
    history = list(pg_repo.commits.list())
    assert len(history) == RACERS
    # Linear: each commit's parent is the next older one.
    assert [commit.parents for commit in history[:-1]] == [[commit.id] for commit in history[1:]]
    head = pg_repo.commits.get(history[0].id)
    assert sorted(entry.path for entry in head.objects.list()) == sorted(f"path-{n}" for n in range(RACERS))


def test_listings_follow_byte_order_like_sqlite(pg_repo: Repository) -> None:
    paths = ["a", "B", "a-b", "a/b", "a.b", "Z", "é", "e", "_", "~x", "A b"]
    with pg_repo.session() as session:
        for path in paths:
            session.objects.put(path, b"x")
        commit_id = session.commit("names")
    listed = [entry.path for entry in pg_repo.commits.get(commit_id).objects.list()]
    assert listed == sorted(paths, key=lambda path: path.encode())


def _versions(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT component, version FROM tilde_meta.schema_version ORDER BY 1, 2"
        ).fetchall()
    return [(str(component), int(version)) for component, version in rows]


def test_an_empty_database_gets_every_migration(postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.new_database()
    StorageEngine.open(tmp_path, database_url=url).close()
    assert _versions(url) == [(METADATA_COMPONENT, step.version) for step in METADATA_MIGRATIONS]


def test_an_older_postgres_schema_is_migrated_with_its_rows(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.new_database()
    pool = shared_pool(PostgresDatabase(url, "tilde_meta"), str(METADATA_MIGRATIONS[0].apply))
    try:
        with pool.transaction() as conn:
            assert apply_migrations(conn, METADATA_COMPONENT, METADATA_MIGRATIONS, target=1) == [1]
            # A repository with one live version, written the way version 1 stored it (no source metadata).
            conn.execute(
                "INSERT INTO repos (repo_id, head_seq, head_commit_id, created_us) VALUES ('r', 1, 'c', 1)"
            )
            conn.execute(
                "INSERT INTO versions (repo_id, path, born_seq, died_seq, blob_key, size, sha256,"
                " content_type, metadata, modified_us)"
                " VALUES ('r', 'p', 1, ?, 'k', 3, 'h', 'text/plain', '{}', 1)",
                (1 << 62,),
            )
    finally:
        pool.release()
    assert _versions(url) == [(METADATA_COMPONENT, 1)]
    engine = StorageEngine.open(tmp_path, database_url=url)
    try:
        with engine.meta.read() as tx:
            (version,) = tx.versions_at("r", 1, KeyRange(), 10)
    finally:
        engine.close()
    assert (version.path, version.size, dict(version.source_metadata)) == ("p", 3, {})
    assert _versions(url) == [(METADATA_COMPONENT, step.version) for step in METADATA_MIGRATIONS]


def test_an_older_sqlite_schema_is_migrated_with_its_rows(tmp_path: Path) -> None:
    db = connect_sqlite(tmp_path / "meta.sqlite3")
    db.execute("BEGIN IMMEDIATE")
    apply_migrations(db, METADATA_COMPONENT, METADATA_MIGRATIONS, target=1)
    db.execute(
        "INSERT INTO uploads (id, repo_id, session_id, path, created_us) VALUES ('u', 'r', 's', 'p', 1)"
    )
    db.execute("COMMIT")
    db.close()
    engine = StorageEngine.open(tmp_path)
    try:
        with engine.meta.read() as tx:
            (upload,) = tx.list_uploads()
    finally:
        engine.close()
    assert (upload.id, upload.part_size) == ("u", None)
    db = connect_sqlite(tmp_path / "meta.sqlite3")
    versions = [int(row[0]) for row in db.execute("SELECT version FROM schema_version ORDER BY version")]
    db.close()
    assert versions == [step.version for step in METADATA_MIGRATIONS]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tilde.server", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_migrate_command_reports_every_store(postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.new_database()
    result = _cli("migrate", "--data-dir", str(tmp_path), "--database-url", url)
    assert result.returncode == 0, result.stderr
    assert "metadata: schema version 3" in result.stdout
    assert "registry: schema version 2" in result.stdout
    # The stores a server on PostgreSQL alone has: its cluster's tables and the shared IAM generation.
    for line in (
        "connectors: schema version 2",
        "iam_generation: schema version 1",
        "cluster_settings: schema version 1",
        "cluster_nodes: schema version 2",
        "cluster_sandboxes: schema version 1",
        "cluster_jobs: schema version 1",
    ):
        assert line in result.stdout
    assert url not in result.stdout + result.stderr
    # Run again: nothing left to apply, same versions.
    again = _cli("migrate", "--data-dir", str(tmp_path), "--database-url", url)
    assert again.stdout == result.stdout


def test_migrate_command_refuses_a_url_that_is_not_postgres(tmp_path: Path) -> None:
    result = _cli("migrate", "--data-dir", str(tmp_path), "--database-url", "mysql://db/x")
    assert result.returncode == 1
    assert "postgresql://" in result.stderr


def test_copy_metadata_moves_a_data_directory_to_postgres(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    with LocalServer(data_dir=data_dir) as embedded:
        api_key = embedded.api_key
        _create_org(embedded, "moving")
        with Client(endpoint_url=embedded.endpoint_url, api_key=api_key) as client:
            repo = client.repositories("moving").create("things")
            with repo.session() as session:
                session.objects.put("a.txt", b"first")
                session.commit("one")
            with repo.session() as session:
                session.objects.put("b/c.txt", b"second")
                session.commit("two")
            secret = httpx.put(
                embedded.endpoint_url.rstrip("/")
                + "/api/v1/organizations/moving/repositories/things/secrets/TOKEN",
                json={"value": "s3cr3t"},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            assert secret.status_code in (200, 201), secret.text
    url = postgres_server.new_database()
    result = _cli("copy-metadata", "--data-dir", str(data_dir), "--database-url", url)
    assert result.returncode == 0, result.stderr
    assert "meta.versions: 2 rows" in result.stdout
    # A second copy into the same (now full) database is refused: copies never merge.
    again = _cli("copy-metadata", "--data-dir", str(data_dir), "--database-url", url)
    assert again.returncode == 1
    assert "not empty" in again.stderr

    with LocalServer(config=ServerConfig(data_dir=data_dir, database_url=url, admin_key=api_key)) as moved:
        with Client(endpoint_url=moved.endpoint_url, api_key=api_key) as client:
            repo = client.repository("moving/things")
            assert [commit.message for commit in repo.commits.list()] == ["two", "one"]
            head = repo.commits.get(next(iter(repo.commits.list())).id)
            assert head.objects.get("a.txt").read() == b"first"
            assert head.objects.get("b/c.txt").read() == b"second"
        listed = httpx.get(
            moved.endpoint_url.rstrip("/") + "/api/v1/organizations/moving/repositories/things/secrets",
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert listed.status_code == 200, listed.text
        assert "TOKEN" in listed.text


def test_serve_reports_an_unreachable_database_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://tilde:hunter2@127.0.0.1:{port}/tilde"
    result = _cli("serve", "--port", "0", "--data-dir", str(tmp_path), "--database-url", url)
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL at 127.0.0.1" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_connections_the_database_dropped_are_replaced(pg_tilde: LocalServer, pg_repo: Repository) -> None:
    url = (pg_tilde.data_dir / DATABASE_URL_FILE).read_text().strip()
    # What a database restart or fail-over does to the server's idle pooled connections.
    with psycopg.connect(url, autocommit=True) as conn:
        dropped = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert dropped is not None
    assert dropped[0] > 0
    response = httpx.get(
        pg_tilde.endpoint_url.rstrip("/") + "/api/v1/organizations",
        headers={"Authorization": f"Bearer {pg_tilde.api_key}"},
    )
    assert response.status_code == 200, response.text
    with pg_repo.session() as session:
        session.objects.put("after", b"reconnected")
        assert session.commit("after the drop")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_triggers_list_in_insertion_order_with_cursors(
    backend: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    location = (
        PostgresDatabase(postgres_server.new_database(), "tilde_triggers")
        if backend == "postgres"
        else tmp_path / "triggers.sqlite3"
    )
    store = TriggerStore(location)
    creator = Principal(type="user", id="u1", name="alice")
    try:
        # Names in reverse alphabetical order: the list follows creation, not names or ids.
        made = [
            store.create("repo", {"name": name, "conditions": [], "sandbox_config": {}}, creator)
            for name in ("zeta", "mu", "alpha")
        ]
        first, more = store.list_triggers("repo", "", 2)
        assert ([t.name for t in first], more) == (["zeta", "mu"], True)
        rest, more = store.list_triggers("repo", str(first[-1].seq), 2)
        assert ([t.name for t in rest], more) == (["alpha"], False)
        assert [t.name for t in store.enabled("repo")] == ["zeta", "mu", "alpha"]
        runs = [
            store.add_run(made[0], f"commit-{n}", "skipped", matched_paths=[], lineage=[]) for n in range(3)
        ]
        newest, more = store.list_runs("repo", made[0].id, "", 2)
        assert ([r.id for r in newest], more) == ([runs[2], runs[1]], True)
        oldest, more = store.list_runs("repo", made[0].id, str(newest[-1].seq), 2)
        assert ([r.id for r in oldest], more) == ([runs[0]], False)
    finally:
        store.close()


def test_a_deadlocked_transaction_is_a_retryable_error(postgres_server: PostgresServer) -> None:
    pool = shared_pool(PostgresDatabase(postgres_server.new_database(), "tilde_test"))
    try:
        with pool.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS pair (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
            conn.execute("INSERT INTO pair (id, n) VALUES ('a', 0), ('b', 0)")
        both_hold_one = threading.Barrier(2)
        outcomes: list[BaseException | None] = []

        def lock(first: str, second: str) -> None:
            try:
                with pool.transaction() as conn:
                    conn.execute("UPDATE pair SET n = n + 1 WHERE id = ?", (first,))
                    both_hold_one.wait()
                    conn.execute("UPDATE pair SET n = n + 1 WHERE id = ?", (second,))
                outcomes.append(None)
            except BaseException as error:  # collected and checked below
                outcomes.append(error)

        threads = [threading.Thread(target=lock, args=pair) for pair in (("a", "b"), ("b", "a"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # PostgreSQL aborts one of the two: a retryable error (503 over HTTP); the other commits.
        assert sorted(type(outcome).__name__ for outcome in outcomes) == ["NoneType", "Retryable"]
        assert all(outcome is None or isinstance(outcome, DatabaseUnavailable) for outcome in outcomes)
    finally:
        pool.release()


def test_two_processes_starting_together_share_one_admin_user(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.new_database()
    migrate_all(tmp_path, url)
    with psycopg.connect(url) as other:
        # Another replica, mid start-up, has inserted the admin user but not committed yet.
        other.execute(
            "INSERT INTO tilde_registry.users (id, username, full_name, email, created_at)"
            " VALUES ('other-admin', 'admin', 'Administrator', '', '2026-01-01T00:00:00Z')"
        )
        opened: list[Registry | BaseException] = []

        def start() -> None:
            try:
                opened.append(Registry(PostgresDatabase(url, "tilde_registry")))
            except BaseException as error:  # checked below
                opened.append(error)

        starting = threading.Thread(target=start)
        starting.start()
        with psycopg.connect(url, autocommit=True) as watch:
            while starting.is_alive():  # until this start waits on the other's uncommitted row
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO users%'"
                ).fetchone()
                if waiting is not None and waiting[0] > 0:
                    break
                threading.Event().wait(0.05)
        other.commit()
        starting.join()
    (registry,) = opened
    assert isinstance(registry, Registry), registry
    try:
        assert registry.admin.id == "other-admin"
    finally:
        registry.close()


def _big_commits(engine: StorageEngine, blob_file: Path) -> list[tuple[str, int, int]]:
    """Three commits over 2,500 paths (more than one batch): add all, replace half and delete a fifth."""
    actor = Actor(type="user", id="u1", name="alice")
    engine.init_repository("r")
    blob = engine.ingest_file(blob_file)
    rounds = [
        [NewObject(f"d/{n:05d}", blob) for n in range(2500)],
        [NewObject(f"d/{n:05d}", blob, content_type="text/plain") for n in range(0, 2500, 2)],
    ]
    for objects in rounds:
        session = engine.create_session("r", actor).id
        engine.stage_objects("r", session, objects)
        engine.commit_session("r", session, "round", actor)
    session = engine.create_session("r", actor).id
    engine.delete_many("r", session, [f"d/{n:05d}" for n in range(0, 2500, 5)])
    engine.commit_session("r", session, "delete", actor)
    return [(c.tree_id, c.object_count, c.total_size) for c in engine.log("r").items]


def test_large_commits_give_the_same_trees_on_both_backends(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    results = []
    for name, url in (("sqlite", None), ("postgres", postgres_server.new_database())):
        (tmp_path / name).mkdir()
        blob_file = tmp_path / name / "blob"
        blob_file.write_bytes(b"twelve bytes")
        engine = StorageEngine.open(tmp_path / name / "data", database_url=url)
        try:
            results.append(_big_commits(engine, blob_file))
        finally:
            engine.close()
    sqlite, postgres = results
    assert postgres == sqlite
    assert [count for _, count, _ in postgres] == [2000, 2500, 2500]


def test_replicas_starting_at_once_all_open_the_secret_store(postgres_server: PostgresServer) -> None:
    # Each replica's start replaces the secret store's PostgreSQL triggers and function; at the same moment,
    # without the migration lock, PostgreSQL refused some of them ("tuple concurrently updated").
    import os

    from tilde.server.crypto import SecretBox
    from tilde.server.secret_store import SecretStore

    location = PostgresDatabase(postgres_server.new_database(), "tilde_registry")
    Registry(location).close()  # the tables the triggers are on
    box = SecretBox([os.urandom(32)])
    failures: list[BaseException] = []

    def start(barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            SecretStore(location, box).close()
        except BaseException as error:  # reported below
            failures.append(error)

    for _ in range(5):
        barrier = threading.Barrier(8)
        threads = [threading.Thread(target=start, args=(barrier,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
