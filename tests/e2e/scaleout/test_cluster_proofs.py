"""Cross-replica proofs on a cluster of three real replicas (``tests/cluster.py``).

Three ``tilde-server serve`` processes share one PostgreSQL database and one SeaweedFS bucket; replicas 0
and 1 run sandboxes, replica 2 is API-only. Clients go through the balancer (each request to a random
replica) unless a proof needs one replica in particular:

- 50 sessions committing the same path through the balancer: exactly one commit, 49 conflicts (409);
- a sandbox started through replica 0, exec'd (websocket) and finished through replica 2, its commit read
  through replica 1;
- a replica killed with SIGKILL during a burst of commits through the balancer and through itself: every
  commit a client saw acknowledged is in the history afterwards, with its bytes;
- a 1 GiB upload through the cluster: the bytes go to the object store, and what reached each replica (counted
  by the balancer, the only way clients reach the replicas here) stays far below the upload's size.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster import ClusterServer, run_cluster
from commit_race import commit_at_once, stage_racers
from pg_server import PostgresServer
from replica_sandboxes import ReplicaSandboxes
from weed_s3 import S3Server

from tilde.data import Client, Repository
from tilde.data.upload_strategies import UploadSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RACERS = 50
#: Replicas by role: A starts sandboxes, B reads, C (API-only) drives sandboxes it does not run.
A, B, C = 0, 1, 2
#: The exec websocket's frame types (CONTRACT section 7).
#: Longest a test waits for something it expects (a bound, not a measurement).
PATIENCE = 180.0
MIB = 1024 * 1024
GIB = 1024 * MIB


@pytest.fixture(scope="module")
def cluster(
    postgres_server: PostgresServer, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterServer]:
    with run_cluster(
        3,
        postgres=postgres_server,
        s3=s3_server,
        sandboxes=(A, B),
        root=tmp_path_factory.mktemp("proofs-cluster"),
    ) as running:
        yield running


@pytest.fixture
def repo_path(cluster: ClusterServer) -> str:
    """A fresh organization and repository, made through the balancer."""
    org = f"proof-{uuid.uuid4().hex[:8]}"
    with _api(cluster.endpoint_url, cluster.api_key) as api:
        created = api.post("/organizations", json={"name": org})
        assert created.status_code == 201, created.text
        created = api.post(f"/organizations/{org}/repositories", json={"name": "repo"})
        assert created.status_code == 201, created.text
    return f"{org}/repo"


def _api(url: str, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=url + "/api/v1",
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
        follow_redirects=True,
    )


def _balancer_stats(cluster: ClusterServer) -> dict[str, dict[str, int]]:
    """Requests and bytes the balancer has sent each replica so far, by replica URL."""
    answer = httpx.get(cluster.endpoint_url + "/_balancer/stats", timeout=30)
    assert answer.status_code == 200, answer.text
    return {row["url"]: row for row in answer.json()["backends"]}


def _sent_since(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], key: str) -> list[int]:
    return [after[url][key] - before[url][key] for url in sorted(before)]


def test_fifty_sessions_committing_one_path_through_three_replicas_give_one_commit(
    cluster: ClusterServer, repo_path: str
) -> None:
    with Client(endpoint_url=cluster.endpoint_url, api_key=cluster.api_key) as client:
        repo = client.repository(repo_path)
        with repo.session() as session:
            session.objects.put("shared", b"base")
            session.commit("base")
        sessions = stage_racers(repo, ["shared"] * RACERS)
        before = _balancer_stats(cluster)
        commits, conflicts, errors = commit_at_once(sessions)
        after = _balancer_stats(cluster)
        assert errors == [], cluster.log_tails()
        assert len(commits) == 1
        assert len(conflicts) == RACERS - 1
        assert {error.status_code for error in conflicts} == {409}
        # The commits were spread: every replica answered some of them.
        assert all(count > 0 for count in _sent_since(before, after, "requests")), (before, after)
        history = list(repo.commits.list())
        assert [commit.message for commit in history][1:] == ["base"]
        assert history[0].id == commits[0]
        winner = history[0].message
        assert repo.commits.get(history[0].id).objects.get("shared").read() == winner.encode()


@pytest.mark.sandbox
def test_a_sandbox_started_on_one_replica_is_run_and_finished_through_another(
    cluster: ClusterServer, repo_path: str
) -> None:
    a, b, c = (ReplicaSandboxes(cluster, index, repo_path, patience=PATIENCE) for index in (A, B, C))
    try:
        created = a.api.post(a.base, json={"mode": "service", "image": "ubuntu:22.04"})
        assert created.status_code == 201, created.text
        sandbox_id = created.json()["sandbox_id"]
        # C runs no sandboxes: everything below reaches the sandbox on A through C.
        assert c.wait(sandbox_id, while_="starting")["status"] == "running"
        out, err, exit_frame = c.exec(
            sandbox_id, "echo made through C > /sandbox/proof.txt && cat /sandbox/proof.txt"
        )
        assert exit_frame["exit_code"] == 0, (out, err, exit_frame)
        assert out == b"made through C\n"
        finished = c.api.post(f"{c.base}/{sandbox_id}/finish")
        assert finished.status_code == 202, finished.text
        final = c.wait(sandbox_id)
        assert (final["status"], final["status_reason"]) == ("done", "committed"), final
        # B, which neither ran nor drove the sandbox, sees the commit and its bytes.
        assert b.wait(sandbox_id) == final
        log = b.api.get(f"{b.repo}/log", params={"amount": 1})
        assert log.status_code == 200, log.text
        assert log.json()["results"][0]["id"] == final["commit_id"]
        read = b.api.get(f"{b.repo}/object", params={"path": "proof.txt"})
        assert read.status_code == 200, read.text
        assert read.content == b"made through C\n"
    finally:
        for node in (a, b, c):
            node.api.close()


class _Burst:
    """Workers committing one new path per session until told to stop; records what was acknowledged."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acknowledged: list[tuple[str, str, bytes]] = []  # (commit id, path, bytes)
        self.failures = 0
        self.threads: list[threading.Thread] = []

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def start(self, name: str, endpoint_url: str, key: str, repo_path: str) -> None:
        thread = threading.Thread(target=self._work, args=(name, endpoint_url, key, repo_path), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _work(self, name: str, endpoint_url: str, key: str, repo_path: str) -> None:
        with Client(endpoint_url=endpoint_url, api_key=key) as client:
            repo = client.repository(repo_path)
            number = 0
            while not self.stop.is_set():
                number += 1
                path, data = f"{name}/{number}", f"{name} {number} {uuid.uuid4().hex}".encode()
                try:
                    session = repo.session()
                    session.objects.put(path, data)
                    commit_id = str(session.commit(f"{name} {number}"))
                except Exception:  # a replica died under this request: not acknowledged, carry on
                    with self.lock:
                        self.failures += 1
                    time.sleep(0.05)
                    continue
                with self.lock:
                    self.acknowledged.append((commit_id, path, data))

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + PATIENCE
        while self.count() < count:
            assert time.monotonic() < deadline, (
                f"only {self.count()} commits acknowledged ({self.failures} failed)"
            )
            time.sleep(0.1)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=PATIENCE)
            assert not thread.is_alive()


def _check_history(repo: Repository, acknowledged: list[tuple[str, str, bytes]]) -> None:
    history = {commit.id for commit in repo.commits.list()}
    missing = [commit_id for commit_id, _, _ in acknowledged if commit_id not in history]
    assert missing == [], f"{len(missing)} acknowledged commits are not in the history"
    for commit_id, path, data in acknowledged:
        assert repo.commits.get(commit_id).objects.get(path).read() == data


def test_a_replica_killed_during_a_commit_burst_loses_no_acknowledged_commit(
    cluster: ClusterServer, repo_path: str
) -> None:
    victim = B
    burst = _Burst()
    before = _balancer_stats(cluster)
    for number in range(4):
        burst.start(f"balanced-{number}", cluster.endpoint_url, cluster.api_key, repo_path)
    for number in range(2):
        burst.start(f"direct-{number}", cluster.replica_url(victim), cluster.api_key, repo_path)
    try:
        burst.wait_for(12)
        # The victim was taking its share of the balanced requests when it died.
        served = _balancer_stats(cluster)[cluster.replica_url(victim)]["requests"]
        cluster.kill(victim)
        killed_at = burst.count()
        burst.wait_for(killed_at + 12)  # the other replicas carry on
    finally:
        burst.join()
        cluster.restart(victim)
    acknowledged = burst.acknowledged
    assert served > before[cluster.replica_url(victim)]["requests"]
    assert burst.failures > 0  # requests in flight on the killed replica and to it afterwards failed
    with Client(endpoint_url=cluster.replica_url(A), api_key=cluster.api_key) as client:
        _check_history(client.repository(repo_path), acknowledged)
    # The restarted replica serves the same history.
    with Client(endpoint_url=cluster.replica_url(victim), api_key=cluster.api_key) as client:
        assert {c.id for c in client.repository(repo_path).commits.list()} >= {c for c, _, _ in acknowledged}


def _upload(
    cluster: ClusterServer, repo_path: str, source: Path, settings: UploadSettings | None = None
) -> str:
    with Client(endpoint_url=cluster.endpoint_url, api_key=cluster.api_key) as client:
        if settings is not None:
            client.upload_settings = settings
        with client.repository(repo_path).session() as session:
            session.objects.put(source.name, source)
            return str(session.commit(f"upload {source.name}"))


def test_a_1_gib_upload_through_the_cluster_goes_to_the_object_store_not_the_replicas(
    cluster: ClusterServer, repo_path: str, s3_server: S3Server, tmp_path: Path
) -> None:
    # The measure can see bytes that do pass a replica: parts below S3's 5 MiB minimum are sent to the
    # server's own upload target (on the balancer's URL), and the balancer counts them.
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * (12 * MIB))
    before = _balancer_stats(cluster)
    _upload(cluster, repo_path, small, UploadSettings(threshold=0, part_size=4 * MIB))
    through_replicas = sum(_sent_since(before, _balancer_stats(cluster), "bytes_sent"))
    assert through_replicas >= small.stat().st_size

    big = tmp_path / "big.bin"
    with big.open("wb") as out:  # sparse: 1 GiB to send, no disk or time spent writing it here
        out.truncate(GIB)
    before = _balancer_stats(cluster)
    commit_id = _upload(cluster, repo_path, big)
    received = _sent_since(before, _balancer_stats(cluster), "bytes_sent")
    # Requests only (stage, part URLs, complete, commit): a few KiB each, nothing of the upload's bytes.
    assert max(received) < 4 * MIB, received
    assert sum(received) < GIB // 100, received
    with Client(endpoint_url=cluster.endpoint_url, api_key=cluster.api_key) as client:
        metadata = client.repository(repo_path).commits.get(commit_id).objects.head(big.name)
        assert metadata.content_length == GIB
    # The bytes are in the bucket, as one object of the blob store.
    bucket, prefix = cluster.blob_store.removeprefix("s3://").split("/", 1)
    sizes = [
        item["Size"]
        for page in s3_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]
    assert GIB in sizes
