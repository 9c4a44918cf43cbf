"""Trigger evaluation across replicas: each commit evaluated exactly once, by a replica that runs sandboxes.

Replicas A and B run sandboxes, C is an API-only replica. Most triggers here run as an agent without the right
to create sandboxes, so each fired trigger records a ``failed`` run at once without starting anything: what is
counted is runs, one per trigger and commit. Images must be registered (``strict_images``), so a sandbox that
does start fails at once too.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pg_server import PostgresServer
from replica_pair import Replica, new_master_key, shared_bucket, start_replica
from weed_s3 import S3Server

from tilde.server.sandbox.triggers import TriggerDispatcher

#: Seconds a test waits for a run to appear.
DEADLINE = 60.0


@pytest.fixture(scope="module")
def replicas(
    postgres_server: PostgresServer, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica, Replica]]:
    url, root = postgres_server.new_database(), tmp_path_factory.mktemp("trigger-replicas")
    admin_key, key, blobs = "tuk-" + uuid.uuid4().hex, new_master_key(), shared_bucket(s3_server)
    started: list[Replica] = []
    try:
        for name, sandbox in (("a", {"strict_images": True}), ("b", {"strict_images": True})):
            started.append(start_replica(root / name, url, admin_key, key, sandbox=sandbox, **blobs))
        started.append(start_replica(root / "c", url, admin_key, key, sandboxes=False, **blobs))
        for replica in started:
            dispatcher = replica.server.app.state.trigger_dispatcher
            dispatcher.SWEEP_INTERVAL = 0.5  # the next sweep comes sooner; what it does is the same
        yield started[0], started[1], started[2]
    finally:
        for replica in reversed(started):
            replica.admin.close()
            replica.server.stop()


@pytest.fixture
def pair(replicas: tuple[Replica, Replica, Replica]) -> tuple[Replica, Replica]:
    """The two replicas that run sandboxes."""
    return replicas[0], replicas[1]


def _repository_with_trigger(replica: Replica, *, powerless: bool = True) -> tuple[str, str]:
    """A fresh repository with one enabled trigger on ``data/``: ``(repository path, trigger id)``.

    A powerless trigger runs as an agent without any policy: firing it records a ``failed`` run at once.
    """
    org = f"org-{uuid.uuid4().hex[:10]}"
    assert replica.admin.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
    assert replica.admin.post(f"/organizations/{org}/repositories", json={"name": "repo"}).status_code == 201
    repo = f"/organizations/{org}/repositories/repo"
    body: dict[str, Any] = {
        "name": "on-data",
        "conditions": [{"type": "prefix", "prefix": "data/"}],
        "sandbox_config": {"image": "not-registered", "command": ["true"]},
    }
    if powerless:
        agent = replica.admin.post(f"/organizations/{org}/agents", json={"name": "powerless"})
        assert agent.status_code == 201, agent.text
        body["run_as"] = {"type": "agent", "id": agent.json()["id"]}
    trigger = replica.admin.post(f"{repo}/sandbox-triggers", json=body)
    assert trigger.status_code == 201, trigger.text
    return repo, str(trigger.json()["id"])


def _commit(replica: Replica, repo: str, path: str) -> str:
    http = replica.admin
    session = http.post(f"{repo}/sessions").json()["session_id"]
    staged = http.put(f"{repo}/object", params={"session_id": session, "path": path}).json()
    assert httpx.put(staged["upload_url"], content=b"x").status_code == 200
    finalized = http.post(
        f"{repo}/object/finalize",
        params={"session_id": session, "path": path},
        json={"upload_token": staged["upload_token"]},
    )
    assert finalized.status_code == 201, finalized.text
    done = http.post(f"{repo}/sessions/{session}", json={"message": "m"})
    assert done.status_code == 200, done.text
    return str(done.json()["commit_id"])


def _runs(replica: Replica, repo: str, trigger_id: str) -> list[dict[str, Any]]:
    listed = replica.admin.get(f"{repo}/sandbox-triggers/{trigger_id}/runs")
    assert listed.status_code == 200, listed.text
    runs: list[dict[str, Any]] = listed.json()["results"]
    return runs


def _wait_for_runs(replica: Replica, repo: str, trigger_id: str) -> list[dict[str, Any]]:
    """Wait until the commit's runs are recorded and settled (``pending`` while a sandbox starts)."""
    deadline = time.monotonic() + DEADLINE
    while not (runs := _runs(replica, repo, trigger_id)) or any(run["status"] == "pending" for run in runs):
        assert time.monotonic() < deadline, f"no replica evaluated the commit: {runs}"
        time.sleep(0.1)
    return runs


class StuckListeners:
    """Occupy every commit-listener worker of a replica, as if it died right after answering a commit."""

    def __init__(self, replica: Replica) -> None:
        self.executor = replica.server.app.state.listener_executor
        self.release = threading.Event()
        self.futures = [self.executor.submit(self.release.wait) for _ in range(self.executor._max_workers)]

    def resume(self) -> None:
        """Let the replica's listeners run again and wait until what they had queued has run."""
        self.release.set()
        for future in self.futures:
            future.result(timeout=30)
        self.executor.submit(lambda: None).result(timeout=DEADLINE)


def test_a_commit_whose_replica_never_evaluates_it_is_evaluated_once_by_another(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    repo, trigger_id = _repository_with_trigger(a)
    stuck = StuckListeners(a)
    try:
        commit_id = _commit(a, repo, "data/one.txt")
        runs = _wait_for_runs(b, repo, trigger_id)
    finally:
        stuck.resume()
    # A's own evaluation, once it could run, found the commit already evaluated.
    runs = _runs(b, repo, trigger_id)
    assert [run["commit_id"] for run in runs] == [commit_id], runs
    assert runs[0]["status"] == "failed", runs


def test_two_replicas_draining_the_same_queue_at_once_fire_each_trigger_once(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    repo, trigger_id = _repository_with_trigger(a)
    second = a.admin.post(
        f"{repo}/sandbox-triggers",
        json={
            "name": "on-everything",
            "conditions": [{"type": "prefix", "prefix": ""}],
            "sandbox_config": {"image": "not-registered", "command": ["true"]},
            "run_as": _runs_as(a, repo, trigger_id),
        },
    )
    assert second.status_code == 201, second.text
    stuck = StuckListeners(a)
    try:
        commits = [_commit(a, repo, f"data/{n}.txt") for n in range(3)]
        repo_id = a.server.app.state.registry.get_repo(
            a.server.app.state.registry.get_org(repo.split("/")[2]).id, "repo"
        ).id
        dispatchers: list[TriggerDispatcher] = [r.server.app.state.trigger_dispatcher for r in pair]
        start = threading.Barrier(len(dispatchers) * 2)

        def drain(dispatcher: TriggerDispatcher) -> None:
            start.wait()
            dispatcher.drain(repo_id, wait=True)

        threads = [threading.Thread(target=drain, args=(d,)) for d in dispatchers * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=DEADLINE)
    finally:
        stuck.resume()
    for trigger in (trigger_id, str(second.json()["id"])):
        runs = _runs(b, repo, trigger)
        assert sorted(run["commit_id"] for run in runs) == sorted(commits), runs


def _runs_as(replica: Replica, repo: str, trigger_id: str) -> Any:
    return replica.admin.get(f"{repo}/sandbox-triggers/{trigger_id}").json()["run_as"]


def test_a_commit_through_an_api_only_replica_is_evaluated_by_a_sandbox_replica(
    replicas: tuple[Replica, Replica, Replica],
) -> None:
    a, _, api_only = replicas
    repo, trigger_id = _repository_with_trigger(a, powerless=False)
    commit_id = _commit(api_only, repo, "data/x.txt")
    runs = _wait_for_runs(api_only, repo, trigger_id)
    assert [run["commit_id"] for run in runs] == [commit_id], runs
    # The API-only replica could not have started a sandbox: a sandbox replica did.
    assert runs[0]["status"] == "created", runs
    assert runs[0]["sandbox_id"], runs
