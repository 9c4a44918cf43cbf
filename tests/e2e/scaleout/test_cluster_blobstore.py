"""One blob store per cluster: a replica whose blobs are not the cluster's refuses to start.

Replicas share a fresh database of the session's PostgreSQL; buckets are the session's SeaweedFS. Replicas
that must start run in the test process (`replica_pair.start_replica`); those that must be refused run as
``python -m tilde.server serve`` processes, whose one line of output is what an operator sees (a process that
wrongly starts serving is stopped by the timeout, and the test fails).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from pg_server import PostgresServer
from replica_pair import Replica, new_master_key, start_replica
from weed_s3 import S3Server

from tilde.server.cli import main
from tilde.server.crypto import MASTER_KEY_ENV

#: Seconds a refused replica may take to say so (one that serves instead runs into it).
REFUSAL_TIMEOUT = 120


def _admin_key() -> str:
    return "tuk-" + uuid.uuid4().hex


def _stop(replica: Replica) -> None:
    replica.admin.close()
    replica.server.stop()


def _node_id(data_dir: Path) -> str:
    return (data_dir / "node_id").read_text(encoding="utf-8").strip()


def _bucket(s3: S3Server, bucket: str, prefix: str = "tilde") -> dict[str, object]:
    """Replica settings that keep blobs under ``prefix`` of ``bucket``."""
    return {
        "blob_store": f"s3://{bucket}/{prefix}",
        "s3_endpoint_url": s3.endpoint_url,
        "s3_region": s3.region,
        "s3_credentials": (s3.access_key_id, s3.secret_access_key),
    }


def _s3_environment(monkeypatch: pytest.MonkeyPatch, s3: S3Server) -> None:
    """The standard AWS variables ``tilde-server`` commands take the object store's identity from."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)
    monkeypatch.setenv("AWS_REGION", s3.region)


def _refused(data_dir: Path, database_url: str, admin_key: str, key: str, *options: str) -> str:
    """Run ``tilde-server serve`` for a replica that must refuse to start; return its one line of output."""
    command = [sys.executable, "-m", "tilde.server", "serve", "--port", "0", "--data-dir", str(data_dir)]
    command += ["--database-url", database_url, "--admin-key", admin_key, *options]
    result = subprocess.run(
        command,
        env={**os.environ, MASTER_KEY_ENV: key},
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def _nodes(database_url: str) -> list[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT node_id FROM tilde_cluster.cluster_nodes ORDER BY node_id").fetchall()
    return [str(row[0]) for row in rows]


def test_a_node_with_local_blobs_restarts_but_a_second_node_with_its_own_blob_files_is_refused(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    database_url, admin_key, key = postgres_server.new_database(), _admin_key(), new_master_key()
    for _ in range(2):  # the same node (its data directory) starts again and again
        first = start_replica(tmp_path / "a", database_url, admin_key, key)
        try:
            assert first.admin.get("/organizations").status_code == 200
        finally:
            _stop(first)
    line = _refused(tmp_path / "b", database_url, admin_key, key)
    first_id, second_id = _node_id(tmp_path / "a"), _node_id(tmp_path / "b")
    assert line.startswith("error: "), line
    assert f"the blob files of node {second_id!r}" in line, line
    assert f"the cluster's is the blob files of node {first_id!r}" in line, line
    # It was refused before it joined the cluster.
    assert _nodes(database_url) == [first_id]


def test_replicas_on_a_bucket_accept_only_that_bucket(
    postgres_server: PostgresServer, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _s3_environment(monkeypatch, s3_server)
    database_url, admin_key, key = postgres_server.new_database(), _admin_key(), new_master_key()
    bucket, other = s3_server.new_bucket({}), s3_server.new_bucket({})
    first = start_replica(tmp_path / "a", database_url, admin_key, key, **_bucket(s3_server, bucket))
    try:
        org = f"org-{uuid.uuid4().hex[:10]}"
        assert first.admin.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
        repo = f"/organizations/{org}/repositories/repo"
        made = first.admin.post(f"/organizations/{org}/repositories", json={"name": "repo"})
        assert made.status_code == 201, made.text
        session = first.admin.post(f"{repo}/sessions").json()["session_id"]
        staged = first.admin.put(f"{repo}/object", params={"session_id": session, "path": "f.txt"})
        assert staged.status_code == 200, staged.text
        assert httpx.put(staged.json()["upload_url"], content=b"shared bytes").status_code == 200
        finalized = first.admin.post(
            f"{repo}/object/finalize",
            params={"session_id": session, "path": "f.txt"},
            json={"upload_token": staged.json()["upload_token"]},
        )
        assert finalized.status_code == 201, finalized.text
        committed = first.admin.post(f"{repo}/sessions/{session}", json={"message": "m"})
        assert committed.status_code == 200, committed.text

        endpoint = ["--s3-endpoint-url", s3_server.endpoint_url]
        line = _refused(
            tmp_path / "b", database_url, admin_key, key, "--blob-store", f"s3://{other}/tilde", *endpoint
        )
        assert f"s3://{other}/tilde/ at {s3_server.endpoint_url}" in line, line
        assert f"the cluster's is s3://{bucket}/tilde/ at {s3_server.endpoint_url}" in line, line
        line = _refused(tmp_path / "c", database_url, admin_key, key)
        assert f"the blob files of node {_node_id(tmp_path / 'c')!r}" in line, line
        assert f"the cluster's is s3://{bucket}/tilde/" in line, line
        # The refused replicas did not remember the stores they were refused with.
        assert not (tmp_path / "b" / "blob_store").exists()

        # The same bucket and prefix (spelled with a trailing slash) is the cluster's: the replica starts and
        # reads what the first one wrote.
        second = start_replica(
            tmp_path / "d", database_url, admin_key, key, **_bucket(s3_server, bucket, "tilde/")
        )
        try:
            read = second.admin.get(f"{repo}/object", params={"path": "f.txt"}, follow_redirects=True)
            assert read.status_code == 200, read.text
            assert read.content == b"shared bytes"
        finally:
            _stop(second)
    finally:
        _stop(first)


def test_a_node_that_moves_its_blob_files_to_a_bucket_makes_the_bucket_the_clusters(
    postgres_server: PostgresServer, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _s3_environment(monkeypatch, s3_server)
    database_url, admin_key, key = postgres_server.new_database(), _admin_key(), new_master_key()
    data_dir, bucket = tmp_path / "a", s3_server.new_bucket({})
    alone = start_replica(data_dir, database_url, admin_key, key)
    _stop(alone)
    copied = CliRunner().invoke(
        main,
        [
            *("copy-blobs", "--data-dir", str(data_dir), "--blob-store", f"s3://{bucket}/tilde"),
            *("--s3-endpoint-url", s3_server.endpoint_url),
        ],
    )
    assert copied.exit_code == 0, copied.output
    # The data directory now remembers the bucket: the node restarts on it.
    moved = start_replica(data_dir, database_url, admin_key, key)
    try:
        assert moved.server.config.blob_store == f"s3://{bucket}/tilde"
        # From now on blob files in a data directory, even the node's own old ones, are not the cluster's.
        line = _refused(tmp_path / "b", database_url, admin_key, key)
        assert f"the cluster's is s3://{bucket}/tilde/ at {s3_server.endpoint_url}" in line, line
    finally:
        _stop(moved)
