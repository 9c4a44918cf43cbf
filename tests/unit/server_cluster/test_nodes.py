"""Cluster nodes: node ids, the trivial cluster of a server on SQLite, and leases in ``cluster_nodes``."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from pg_server import PostgresServer

from tilde.server._db import PostgresDatabase
from tilde.server.cli import main
from tilde.server.cluster import CLUSTER_SCHEMA, Cluster, make_cluster, resolve_node_id
from tilde.server.cluster.nodes import NodeCluster, NodeIdInUse
from tilde.server.config import ServerConfig


def test_a_data_directory_remembers_the_node_id_it_generated(tmp_path: Path) -> None:
    first = resolve_node_id(tmp_path, None)
    assert first.startswith("node-")
    assert resolve_node_id(tmp_path, None) == first
    assert (tmp_path / "node_id").stat().st_mode & 0o077 == 0
    # An id given explicitly wins (and is not written over the remembered one).
    assert resolve_node_id(tmp_path, "api-1") == "api-1"
    assert resolve_node_id(tmp_path, None) == first


@pytest.mark.parametrize("bad", ["-leading-dash", "has space", "slash/y", "x" * 64])
def test_invalid_node_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid node id"):
        resolve_node_id(tmp_path, bad)


def test_serve_refuses_a_bad_node_id_or_url_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    for option, value in (("--node-id", "has space"), ("--node-url", "ftp://x")):
        result = runner.invoke(main, ["serve", "--port", "0", "--data-dir", str(tmp_path), option, value])
        assert result.exit_code != 0
        assert option in result.output, result.output
        assert "Traceback" not in result.output


def test_a_server_on_sqlite_is_a_cluster_of_itself(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path, host="127.0.0.1", port=8123, node_id="solo")
    cluster = make_cluster(config, secret=b"k" * 32)
    assert type(cluster) is Cluster
    assert not cluster.enabled
    assert cluster.node_url("solo") == "http://127.0.0.1:8123"
    assert cluster.node_url("other") is None
    assert cluster.sandbox_nodes() == [("solo", "http://127.0.0.1:8123")]
    config.sandboxes = False
    config.node_url = "http://api.internal:9000/"
    api_only = make_cluster(config, secret=b"k" * 32)
    assert api_only.sandbox_nodes() == []
    assert api_only.node_url("solo") == "http://api.internal:9000"
    # Without an id given, a server on SQLite makes one up and leaves its data directory as it was.
    config.node_id = None
    assert make_cluster(config, secret=b"k" * 32).node_id.startswith("node-")
    assert not (tmp_path / "node_id").exists()


@pytest.fixture
def database(postgres_server: PostgresServer) -> PostgresDatabase:
    return PostgresDatabase(postgres_server.new_database(), CLUSTER_SCHEMA)


def _expire(database: PostgresDatabase, node_id: str) -> None:
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {CLUSTER_SCHEMA}.cluster_nodes SET lease_until_us = 0 WHERE node_id = %s", (node_id,)
        )


def test_nodes_are_alive_while_their_lease_lasts_and_leave_when_closed(database: PostgresDatabase) -> None:
    a = NodeCluster(database, "a", "http://a:1", b"s" * 32)
    b = NodeCluster(database, "b", "http://b:1", b"s" * 32, runs_sandboxes=False)
    try:
        assert a.enabled
        assert a.node_url("b") == "http://b:1"
        assert a.sandbox_nodes() == [("a", "http://a:1")]
        assert [node for node, _, _ in a.nodes.live()] == ["a", "b"]
        # A lease that ran out: the node is dead for everyone, until its next heartbeat renews it.
        _expire(database, "b")
        assert [node for node, _, _ in a.nodes.live()] == ["a"]
        b.heartbeat()
        assert [node for node, _, _ in a.nodes.live()] == ["a", "b"]
        # A row removed behind a node's back is written again by its next heartbeat.
        a.nodes.remove("b", b.instance)
        b.heartbeat()
        assert [node for node, _, _ in a.nodes.live()] == ["a", "b"]
        b.close()
        assert [node for node, _, _ in a.nodes.live()] == ["a"]
    finally:
        b.close()
        a.close()


def test_periodic_duties_run_after_each_heartbeat_and_their_errors_are_contained(
    database: PostgresDatabase,
) -> None:
    node = NodeCluster(database, "a", "http://a:1", b"s" * 32)
    ran: list[str] = []

    def failing() -> None:
        ran.append("failing")
        raise RuntimeError("boom")

    try:
        node.add_periodic(failing)
        node.add_periodic(lambda: ran.append("next"))
        node.heartbeat()
        # The failing duty did not stop the next one (nor the heartbeat thread, which may have run too).
        assert "failing" in ran
        assert "next" in ran
    finally:
        node.close()


def test_a_node_id_held_by_a_live_replica_elsewhere_is_refused(database: PostgresDatabase) -> None:
    first = NodeCluster(database, "same", "http://a:1", b"s" * 32, lease_seconds=1.0, home="host-a:/data")
    try:
        # Another machine (or data directory) with the same id waits one lease for it to lapse, then gives up.
        with pytest.raises(NodeIdInUse, match="host-a:/data"):
            NodeCluster(database, "same", "http://b:1", b"s" * 32, lease_seconds=1.0, home="host-b:/data")
        assert first.node_url("same") == "http://a:1"
        assert [node for node, _, _ in first.nodes.live()] == ["same"]
    finally:
        first.close()


def test_a_replica_restarted_before_its_lease_ran_out_takes_its_id_back_at_once(
    database: PostgresDatabase,
) -> None:
    killed = NodeCluster(database, "same", "http://a:1", b"s" * 32, home="host-a:/data")
    killed._stop.set()  # as if killed: it renews no more and never removes its row
    restarted = NodeCluster(database, "same", "http://a:2", b"s" * 32, home="host-a:/data")
    try:
        assert restarted.instance != killed.instance
        assert restarted.nodes.live() == [("same", "http://a:2", True)]
        # The old process, if it were still around, could not renew the row its successor holds.
        assert not killed.nodes.renew("same", killed.instance, "http://a:1", True, 10.0)
    finally:
        restarted.close()
        killed.nodes.close()
