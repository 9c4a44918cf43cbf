"""The three-replica cluster the suites rerun on (``tests/cluster.py``): what the fixture promises holds.

Each request through ``endpoint_url`` goes to a random replica, even on one kept-alive connection; a killed
replica is skipped and a restarted one serves the shared data again; ``create_api_key`` gives a key every
replica accepts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from cluster import ClusterServer, run_cluster
from pg_server import PostgresServer
from weed_s3 import S3Server


def unique_name(prefix: str) -> str:
    """A fresh organization or user name (``from conftest import`` would find whichever conftest is first)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def cluster(
    postgres_server: PostgresServer, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterServer]:
    with run_cluster(
        3, postgres=postgres_server, s3=s3_server, sandboxes=False, root=tmp_path_factory.mktemp("fixture")
    ) as running:
        yield running


def _admin(url: str, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{url}/api/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
        limits=httpx.Limits(max_connections=1),
    )


def _requests_per_replica(cluster: ClusterServer) -> list[int]:
    stats = httpx.get(f"{cluster.endpoint_url}/_balancer/stats", timeout=30).json()
    return [backend["requests"] for backend in stats["backends"]]


def _new_org(cluster: ClusterServer) -> str:
    name = unique_name("org")
    with _admin(cluster.endpoint_url, cluster.api_key) as api:
        created = api.post("/organizations", json={"name": name, "display_name": name})
    assert created.status_code == 201, created.text
    return name


def test_requests_on_one_connection_reach_every_replica(cluster: ClusterServer) -> None:
    org = _new_org(cluster)
    before = _requests_per_replica(cluster)
    with _admin(cluster.endpoint_url, cluster.api_key) as api:
        answers = [api.get(f"/organizations/{org}") for _ in range(45)]
        streams = {id(answer.extensions["network_stream"]) for answer in answers}
    after = _requests_per_replica(cluster)
    assert {answer.status_code for answer in answers} == {200}
    assert len(streams) == 1  # one kept-alive client connection
    assert all(later > earlier for earlier, later in zip(before, after, strict=True)), (before, after)
    assert sum(after) - sum(before) == len(answers)


def test_a_killed_replica_is_skipped_and_serves_again_after_a_restart(cluster: ClusterServer) -> None:
    org = _new_org(cluster)
    node_id = cluster.replicas[1].node_id
    cluster.kill(1)
    assert not cluster.replicas[1].running
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{cluster.replica_url(1)}/healthz", timeout=5)
    with _admin(cluster.endpoint_url, cluster.api_key) as api:
        assert {api.get(f"/organizations/{org}").status_code for _ in range(20)} == {200}
    cluster.restart(1)
    assert cluster.replicas[1].running
    assert cluster.replicas[1].node_id == node_id
    with _admin(cluster.replica_url(1), cluster.api_key) as api:
        assert api.get(f"/organizations/{org}").json()["name"] == org


def test_create_api_key_gives_a_member_key_every_replica_accepts(cluster: ClusterServer) -> None:
    org = _new_org(cluster)
    name = unique_name("member")
    token = cluster.create_api_key("user", name, org)
    for index in range(len(cluster.replicas)):
        with _admin(cluster.replica_url(index), token) as member:
            response = member.get("/organizations")
            assert response.status_code == 200, response.text
            assert org in {entry["name"] for entry in response.json()["results"]}
    with _admin(cluster.endpoint_url, "tuk-not-a-key") as stranger:
        assert stranger.get("/organizations").status_code == 401
