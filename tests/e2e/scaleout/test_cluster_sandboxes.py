"""Sandboxes across the nodes of a cluster: shared records, status long polls, forwarding, lost nodes.

Two real ``tilde-server serve`` replicas on one PostgreSQL database (``tests/cluster.py``), each asked
directly (not through the balancer), so which node runs a sandbox and which one answers is known.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cluster import ClusterServer, run_cluster
from pg_server import PostgresServer
from replica_sandboxes import ReplicaSandboxes as Node
from weed_s3 import S3Server

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

#: Longest a test waits for a status it expects (a bound, not a measurement).
PATIENCE = 120.0


@pytest.fixture(scope="module")
def cluster(
    postgres_server: PostgresServer, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterServer]:
    # A short lease, so a killed node is declared dead soon (the default is 10 s).
    with run_cluster(
        2,
        postgres=postgres_server,
        s3=s3_server,
        root=tmp_path_factory.mktemp("sandbox-cluster"),
        env={"TILDE_SERVER_NODE_LEASE": "4"},
    ) as running:
        yield running


def make_repo(cluster: ClusterServer) -> str:
    """Create an organization and a repository through the first replica; returns ``org/repo``."""
    org = f"org-{uuid.uuid4().hex[:8]}"
    with httpx.Client(
        base_url=cluster.replica_url(0) + "/api/v1",
        headers={"Authorization": f"Bearer {cluster.api_key}"},
        timeout=60,
    ) as api:
        assert api.post("/organizations", json={"name": org}).status_code == 201
        created = api.post(f"/organizations/{org}/repositories", json={"name": "work"})
        assert created.status_code == 201, created.text
    return f"{org}/work"


@pytest.fixture
def repo_path(cluster: ClusterServer) -> str:
    return make_repo(cluster)


@pytest.fixture
def nodes(cluster: ClusterServer, repo_path: str) -> Iterator[tuple[Node, Node]]:
    a, b = Node(cluster, 0, repo_path, patience=PATIENCE), Node(cluster, 1, repo_path, patience=PATIENCE)
    yield a, b
    a.api.close()
    b.api.close()


def test_a_sandbox_of_one_node_is_read_listed_and_driven_through_another(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    sandbox_id = a.service()
    # B does not run it, but knows it: the object, its status and its owner's answers.
    response = b.api.get(f"{b.base}/{sandbox_id}")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == sandbox_id
    assert response.json()["status"] == "running"
    # The whole object as its owner shows it (spec, resources, creator, times, status).
    assert response.json() == a.api.get(f"{a.base}/{sandbox_id}").json()
    assert b.status(sandbox_id)["status"] == "running"
    assert b.api.get(f"{b.base}/sandbox-unknown").status_code == 404
    # Exec and logs through B reach the sandbox on A.
    out, _, exit_body = b.exec(sandbox_id, "echo hello from the sandbox")
    assert exit_body["exit_code"] == 0, exit_body
    assert out == b"hello from the sandbox\n"
    network = b.api.get(f"{b.base}/{sandbox_id}/logs/network")
    assert network.status_code == 200, network.text
    # Finish through B: A stops it and commits; both nodes then report the same final status.
    finished = b.api.post(f"{b.base}/{sandbox_id}/finish")
    assert finished.status_code == 202, finished.text
    final = b.wait(sandbox_id)
    assert final["status"] == "done", final
    assert a.status(sandbox_id) == final
    assert b.api.get(f"{b.base}/{sandbox_id}").json() == a.api.get(f"{a.base}/{sandbox_id}").json()
    again = b.api.post(f"{b.base}/{sandbox_id}/finish")
    assert again.status_code == 409, again.text
    assert set(again.json()) >= {"message", "code", "request_id"}


def test_listing_pages_through_the_sandboxes_of_every_node(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    ids = [node.create(command=["true"]) for node in (a, b, a, b, a)]
    for node in (a, b):
        assert node.listing(2) == ids
        assert node.listing(100) == ids
    for sandbox_id in ids:
        assert b.wait(sandbox_id)["status"] == "done"
    # Finished sandboxes stay listed, in the same order, on both nodes.
    assert a.listing(3) == b.listing(1) == ids


def test_a_status_long_poll_on_another_node_wakes_when_the_sandbox_ends(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    sandbox_id = a.service()
    answers: list[dict[str, Any]] = []
    polling = threading.Thread(target=lambda: answers.append(b.status(sandbox_id, wait=60)))
    polling.start()
    # Give B's long poll its time to start waiting, then end the sandbox on A.
    time.sleep(1)
    assert polling.is_alive()
    response = a.api.delete(f"{a.base}/{sandbox_id}")
    assert response.status_code == 202, response.text
    polling.join(timeout=PATIENCE)
    assert not polling.is_alive()
    assert answers[0]["status"] == "cancelled", answers
    assert answers[0] == a.status(sandbox_id)


def test_the_sandboxes_of_a_killed_node_become_lost_and_their_sessions_roll_back(
    cluster: ClusterServer, nodes: tuple[Node, Node]
) -> None:
    a, b = nodes
    sandbox_id = b.service()
    out, _, exit_body = b.exec(sandbox_id, "echo changed > /sandbox/lost.txt && echo ok")
    assert exit_body["exit_code"] == 0, (out, exit_body)
    cluster.kill(1)
    try:
        # A declares B dead once B's lease has run out, marks the sandbox lost and rolls its session back.
        final = a.wait(sandbox_id)
        assert final["status"] == "failed", final
        assert final["status_reason"] == "sandbox_lost", final
        assert cluster.replicas[1].node_id in final["error_message"]
        # Its session is no longer open (rolling it back again is refused), and nothing was committed.
        again = a.api.delete(f"{a.repo}/sessions/{sandbox_id}")
        assert again.status_code in (404, 409), again.text
        assert a.api.get(f"{a.repo}/object", params={"path": "lost.txt"}).status_code == 404
        # The logs of a sandbox whose node is gone are gone; cancelling it is a conflict, not a 500.
        assert a.api.get(f"{a.base}/{sandbox_id}/logs/stdout").status_code == 410
        assert a.api.delete(f"{a.base}/{sandbox_id}").status_code == 409
    finally:
        cluster.restart(1)
    # The node is back with the same id: it reports the final status the cluster decided for its old sandbox.
    assert b.status(sandbox_id) == a.status(sandbox_id) == final
    assert sandbox_id in b.listing(100)


def test_a_node_restarted_with_its_id_declares_its_earlier_sandboxes_lost_at_once(
    postgres_server: PostgresServer, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A lease far longer than the test: only the restarted node itself can end its old sandbox here.
    with run_cluster(
        2,
        postgres=postgres_server,
        s3=s3_server,
        root=tmp_path_factory.mktemp("restart-cluster"),
        env={"TILDE_SERVER_NODE_LEASE": "600"},
    ) as cluster:
        repo_path = make_repo(cluster)
        a, b = Node(cluster, 0, repo_path, patience=PATIENCE), Node(cluster, 1, repo_path, patience=PATIENCE)
        try:
            sandbox_id = b.service()
            out, _, exit_body = b.exec(sandbox_id, "echo changed > /sandbox/lost.txt && echo ok")
            assert exit_body["exit_code"] == 0, (out, exit_body)
            cluster.kill(1)
            assert a.status(sandbox_id)["status"] == "running"  # its lease has not run out
            # Same node id, same machine and data directory: it takes its id back without waiting out the
            # lease, and ends what it was running before it serves.
            cluster.restart(1)
            final = a.status(sandbox_id)
            assert final["status"] == "failed", final
            assert final["status_reason"] == "sandbox_lost", final
            assert b.status(sandbox_id) == final
            again = a.api.delete(f"{a.repo}/sessions/{sandbox_id}")
            assert again.status_code in (404, 409), again.text
            assert a.api.get(f"{a.repo}/object", params={"path": "lost.txt"}).status_code == 404
        finally:
            a.api.close()
            b.api.close()
