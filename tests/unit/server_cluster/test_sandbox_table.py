"""The shared sandbox table on a real PostgreSQL: write-through, pages, final statuses, the reaper."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from pg_server import PostgresServer

from tilde.server._db import PostgresDatabase
from tilde.server.auth import Principal
from tilde.server.cluster import CLUSTER_SCHEMA
from tilde.server.cluster.nodes import NodeTable
from tilde.server.cluster.sandboxes import SandboxTable
from tilde.server.sandbox.record import SandboxRecord
from tilde.server.sandbox.spec import parse_spec
from tilde.server.storage import StorageError


@dataclass(frozen=True)
class Repo:
    id: str
    name: str = "work"


@dataclass
class Session:
    state: str


@dataclass
class Engine:
    """The two engine calls the reaper makes, recording the rollbacks."""

    sessions: dict[str, Session] = field(default_factory=dict)
    rolled_back: list[str] = field(default_factory=list)

    def get_session(self, repo_id: str, session_id: str) -> Session:
        if session_id not in self.sessions:
            raise StorageError(f"no session {session_id}")
        return self.sessions[session_id]

    def rollback_session(self, repo_id: str, session_id: str) -> None:
        self.sessions[session_id].state = "rolled_back"
        self.rolled_back.append(session_id)


def record(
    sandbox_id: str, repo: str = "repo-1", created_at: str = "2026-01-01T00:00:00.000001Z"
) -> SandboxRecord:
    user = Principal("user", "u1", "alice", None)
    spec = parse_spec({"command": ["true"], "image": "ubuntu:22.04"}, default_timeout=60, max_timeout=None)
    return SandboxRecord(
        id=sandbox_id,
        org_name="org",
        repo=Repo(repo),
        principal=user,
        actor=user,
        spec=spec,
        directory=Path("/nonexistent"),
        created_at=created_at,
        updated_at=created_at,
    )


def _lease_ended(database: PostgresDatabase, node_id: str, *, seconds_ago: float) -> None:
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {CLUSTER_SCHEMA}.cluster_nodes SET lease_until_us ="
            " CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) - %s WHERE node_id = %s",
            (int(seconds_ago * 1_000_000), node_id),
        )


@pytest.fixture
def database(postgres_server: PostgresServer) -> PostgresDatabase:
    return PostgresDatabase(postgres_server.new_database(), CLUSTER_SCHEMA)


@pytest.fixture
def table(database: PostgresDatabase) -> Iterator[SandboxTable]:
    nodes = NodeTable(database)  # the reaper reads the nodes' leases next to the sandboxes
    store = SandboxTable(database)
    yield store
    store.close()
    nodes.close()


def test_records_are_written_through_and_read_back(table: SandboxTable) -> None:
    sandbox = record("s1")
    assert table.put(sandbox, "node-a") is None
    node, state = table.get("repo-1", "s1") or ("", {})
    assert node == "node-a"
    assert state["status"] == "starting"
    sandbox.set_status("running")
    assert table.put(sandbox, "node-a") is None
    assert (table.get("repo-1", "s1") or ("", {}))[1]["status"] == "running"
    # Another repository's sandbox id is not found through this one.
    assert table.get("repo-2", "s1") is None


def test_a_terminal_status_in_the_table_is_final(table: SandboxTable) -> None:
    sandbox = record("s1")
    table.put(sandbox, "node-a")
    sandbox.set_status("failed", "sandbox_lost", error_message="lost")
    assert table.put(sandbox, "node-a") is None
    later = record("s1")
    later.set_status("running")
    final = table.put(later, "node-a")
    assert final is not None
    assert (final["status"], final["status_reason"]) == ("failed", "sandbox_lost")
    assert (table.get("repo-1", "s1") or ("", {}))[1]["status"] == "failed"


def test_pages_follow_creation_time_then_id_with_the_last_id_as_cursor(table: SandboxTable) -> None:
    times = [
        "2026-01-01T00:00:02Z",
        "2026-01-01T00:00:01.5Z",
        "2026-01-01T00:00:01.5Z",
        "2026-01-01T00:00:03Z",
    ]
    for sandbox_id, created_at in zip(["d", "c", "b", "a"], times, strict=True):
        table.put(record(sandbox_id, created_at=created_at), "node-a")
    table.put(record("other", repo="repo-2"), "node-b")
    expected = ["b", "c", "d", "a"]
    seen: list[str] = []
    after = ""
    while True:
        rows, more = table.page("repo-1", after, 3)
        seen += [sandbox_id for sandbox_id, _, _ in rows]
        if not more:
            break
        after = rows[-1][0]
    assert seen == expected
    # A cursor this repository does not know starts from the beginning (as on a single node).
    assert [row[0] for row in table.page("repo-1", "unknown", 10)[0]] == expected
    table.delete(["b", "c"])
    assert [row[0] for row in table.page("repo-1", "", 10)[0]] == ["d", "a"]


def test_the_reaper_loses_the_active_sandboxes_of_dead_nodes_only(
    database: PostgresDatabase, table: SandboxTable
) -> None:
    nodes = NodeTable(database)
    try:
        for node in ("alive", "dead", "reaper"):
            assert nodes.claim(node, f"home-{node}", "i", f"http://{node}", True, 60.0) is None
        _lease_ended(database, "dead", seconds_ago=1)
        engine = Engine({name: Session("open") for name in ("on-alive", "on-dead", "on-reaper", "done-dead")})
        for sandbox_id, node in (("on-alive", "alive"), ("on-dead", "dead"), ("on-reaper", "reaper")):
            table.put(record(sandbox_id), node)
        finished = record("done-dead")
        finished.set_status("done", "")
        table.put(finished, "dead")
        # A node without a row at all is dead as well.
        table.put(record("on-unknown"), "never-registered")
        # The reaper never loses its own node's sandboxes (it renewed its lease just before).
        lost = table.lose(engine, "node {node} died", own="reaper")
        assert sorted(lost) == ["on-dead", "on-unknown"]
        assert engine.rolled_back == ["on-dead"]  # on-unknown has no session any more: nothing to roll back
        state = (table.get("repo-1", "on-dead") or ("", {}))[1]
        assert (state["status"], state["status_reason"]) == ("failed", "sandbox_lost")
        assert state["error_message"] == "node dead died"
        assert state["finished_at"]
        assert (table.get("repo-1", "done-dead") or ("", {}))[1]["status"] == "done"
        for untouched in ("on-alive", "on-reaper"):
            assert (table.get("repo-1", untouched) or ("", {}))[1]["status"] == "starting"
        # Nothing is left to do: a second pass loses nothing.
        assert table.lose(engine, "node {node} died", own="reaper") == []
    finally:
        nodes.close()


def test_one_reaper_at_a_time(database: PostgresDatabase, table: SandboxTable) -> None:
    table.put(record("orphan"), "gone")
    with psycopg.connect(database.url, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("tilde-cluster-sandbox-reaper",))
        # Another node is reaping: this one does nothing rather than wait.
        assert table.lose(Engine(), "{node}", own="me") == []
        holder.execute("ROLLBACK")
    assert table.lose(Engine(), "{node}", own="me") == ["orphan"]


def test_a_restarting_node_loses_its_own_active_sandboxes(table: SandboxTable) -> None:
    table.put(record("mine"), "me")
    table.put(record("theirs"), "them")
    engine = Engine({"mine": Session("open")})
    assert table.lose(engine, "{node} restarted", node_id="me") == ["mine"]
    assert engine.rolled_back == ["mine"]
    assert (table.get("repo-1", "theirs") or ("", {}))[1]["status"] == "starting"
    assert table.of_node("me") == [("mine", True)]


def test_nodes_gone_for_a_day_are_forgotten_with_their_finished_sandboxes(
    database: PostgresDatabase, table: SandboxTable
) -> None:
    nodes = NodeTable(database)
    try:
        for node in ("removed", "restarting"):
            assert nodes.claim(node, f"home-{node}", "i", f"http://{node}", True, 60.0) is None
            done = record(f"done-on-{node}")
            done.set_status("done", "")
            table.put(done, node)
        table.put(record("active-on-removed"), "removed")
        _lease_ended(database, "removed", seconds_ago=2 * 86400)
        _lease_ended(database, "restarting", seconds_ago=60)
        assert table.lose(Engine(), "{node}", own="me") == ["active-on-removed"]
        # The node gone for two days is forgotten, with its finished sandboxes (the one just lost too);
        # the node that stopped a minute ago keeps its row and its sandboxes for when it comes back.
        assert table.get("repo-1", "done-on-removed") is None
        assert table.get("repo-1", "active-on-removed") is None
        assert table.get("repo-1", "done-on-restarting") is not None
        assert [row[0] for row in nodes._all("SELECT node_id FROM cluster_nodes ORDER BY node_id")] == [
            "restarting"
        ]
    finally:
        nodes.close()
