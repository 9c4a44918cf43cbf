"""What the replicas of a cluster share through PostgreSQL: secrets, the master key check, housekeeping."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from pg_server import PostgresServer
from replica_pair import Replica, new_master_key, shared_bucket, start_replica, two_replicas
from weed_s3 import S3Server

from tilde.server.cli import main
from tilde.server.crypto import MASTER_KEY_ENV


@pytest.fixture(scope="module")
def database_url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


@pytest.fixture(scope="module")
def blobs(s3_server: S3Server) -> dict[str, Any]:
    """The bucket of the replicas on ``database_url`` (a cluster's replicas share one)."""
    return shared_bucket(s3_server)


@pytest.fixture(scope="module")
def pair(
    database_url: str, blobs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    with two_replicas(database_url, tmp_path_factory.mktemp("settings-pair"), **blobs) as replicas:
        yield replicas


def _serve(data_dir: Path, database_url: str, admin_key: str) -> list[str]:
    """``tilde-server serve`` arguments for a replica of the cluster at ``database_url``."""
    options = {"--port": "0", "--data-dir": str(data_dir), "--database-url": database_url}
    return ["serve", *(item for pair in options.items() for item in pair), "--admin-key", admin_key]


def test_an_upload_staged_through_one_replica_is_finalized_by_another(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    org = f"org-{uuid.uuid4().hex[:10]}"
    assert a.admin.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
    repo = f"/organizations/{org}/repositories/repo"
    assert a.admin.post(f"/organizations/{org}/repositories", json={"name": "repo"}).status_code == 201
    session = a.admin.post(f"{repo}/sessions").json()["session_id"]
    staged = a.admin.put(f"{repo}/object", params={"session_id": session, "path": "f.txt"})
    assert staged.status_code == 200, staged.text
    # The bytes go to the shared bucket; the upload token A signed is checked by B.
    uploaded = httpx.put(staged.json()["upload_url"], content=b"across replicas")
    assert uploaded.status_code == 200, uploaded.text
    finalized = b.admin.post(
        f"{repo}/object/finalize",
        params={"session_id": session, "path": "f.txt"},
        json={"upload_token": staged.json()["upload_token"]},
    )
    assert finalized.status_code == 201, finalized.text
    assert b.admin.post(f"{repo}/sessions/{session}", json={"message": "m"}).status_code == 200
    read = b.admin.get(f"{repo}/object", params={"path": "f.txt"}, follow_redirects=True)
    assert read.status_code == 200
    assert read.content == b"across replicas"


def test_a_replica_with_another_master_key_refuses_to_start(
    pair: tuple[Replica, Replica], database_url: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        main,
        _serve(tmp_path / "c", database_url, pair[0].admin_key),
        env={MASTER_KEY_ENV: new_master_key()},
    )
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "master key" in lines[0], lines
    assert MASTER_KEY_ENV in lines[0], lines


def test_a_replica_rotating_to_a_new_master_key_starts_and_records_the_new_key(
    postgres_server: PostgresServer, s3_server: S3Server, tmp_path: Path
) -> None:
    database_url, admin_key = postgres_server.new_database(), "tuk-" + uuid.uuid4().hex
    old, new, blobs = new_master_key(), new_master_key(), shared_bucket(s3_server)
    for data_dir, key in (("first", old), ("rotating", f"{new},{old}")):
        # A rotation lists the new key first and keeps the cluster's current one to open what it sealed.
        replica = start_replica(tmp_path / data_dir, database_url, admin_key, key, **blobs)
        try:
            assert replica.admin.get("/organizations").status_code == 200
        finally:
            replica.admin.close()
            replica.server.stop()
    # From now on the new key is the cluster's: a replica still on the old one alone is refused.
    result = CliRunner().invoke(
        main, _serve(tmp_path / "stale", database_url, admin_key), env={MASTER_KEY_ENV: old}
    )
    assert result.exit_code == 1, result.output
    assert "master key" in result.output
    replica = start_replica(tmp_path / "renewed", database_url, admin_key, new, **blobs)
    replica.admin.close()
    replica.server.stop()


def test_housekeeping_started_on_two_replicas_at_once_runs_each_job_on_one(
    pair: tuple[Replica, Replica], database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM tilde_cluster.cluster_jobs")  # as if the last runs were long ago
    start = threading.Barrier(2)
    ran: dict[int, list[str]] = {}

    def run(index: int, replica: Replica) -> None:
        start.wait()
        ran[index] = replica.server.app.state.housekeeping.run_once()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(pair)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    everything = sorted(name for names in ran.values() for name in names)
    assert everything == ["blob-gc", "import-recovery", "upload-cleanup"], ran
    # And a round soon after, on either replica, finds every job done recently.
    assert pair[0].server.app.state.housekeeping.run_once() == []


def test_an_import_running_on_one_replica_survives_another_replicas_start_and_stop(
    pair: tuple[Replica, Replica], database_url: str, blobs: dict[str, Any], tmp_path: Path
) -> None:
    a, _ = pair
    org = f"org-{uuid.uuid4().hex[:10]}"
    assert a.admin.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
    for name in ("source", "target"):
        assert a.admin.post(f"/organizations/{org}/repositories", json={"name": name}).status_code == 201
    runner = a.server.app.state.import_runner
    release = threading.Event()
    # A's import workers are busy: its job waits as pending, A's to run.
    blockers = [runner._executor.submit(release.wait) for _ in range(runner._executor._max_workers)]
    try:
        started = a.admin.post(
            f"/organizations/{org}/repositories/target/import",
            json={"source_organization": org, "source_repository": "source", "destination_path": "in/"},
        )
        assert started.status_code == 202, started.text
        job = f"/organizations/{org}/repositories/target/import/{started.json()['job_id']}"
        # Another replica starts (recovering unfinished imports) and stops (failing its own).
        other = start_replica(tmp_path / "g", database_url, a.admin_key, a.master_key, **blobs)
        other.admin.close()
        other.server.stop()
        status = a.admin.get(job).json()
        assert status["status"] == "pending", status
    finally:
        release.set()
        for blocker in blockers:
            blocker.result(timeout=30)


def test_after_rotate_master_key_replicas_start_with_the_new_key_alone(
    postgres_server: PostgresServer, s3_server: S3Server, tmp_path: Path
) -> None:
    database_url, admin_key = postgres_server.new_database(), "tuk-" + uuid.uuid4().hex
    old, new, blobs = new_master_key(), new_master_key(), shared_bucket(s3_server)
    first = start_replica(tmp_path / "first", database_url, admin_key, old, **blobs)
    first.admin.close()
    first.server.stop()
    rotated = CliRunner().invoke(
        main,
        ["rotate-master-key", "--data-dir", str(tmp_path / "first"), "--database-url", database_url],
        env={MASTER_KEY_ENV: f"{new},{old}"},
    )
    assert rotated.exit_code == 0, rotated.output
    replica = start_replica(tmp_path / "second", database_url, admin_key, new, **blobs)
    replica.admin.close()
    replica.server.stop()
