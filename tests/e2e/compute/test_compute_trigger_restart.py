"""Triggers outlive a server restart (they are stored in the data directory)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tilde.compute import Client
from tilde.server import LocalServer

pytestmark = pytest.mark.sandbox


def _make_repo(server: LocalServer) -> None:
    with httpx.Client(
        base_url=server.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {server.api_key}"}
    ) as api:
        assert api.post("/organizations", json={"name": "restart", "display_name": "R"}).status_code == 201
        assert api.post("/organizations/restart/repositories", json={"name": "repo"}).status_code == 201


def test_stored_triggers_are_listed_after_a_restart(tmp_path: Path) -> None:
    with LocalServer(data_dir=tmp_path) as first:
        _make_repo(first)
        with Client(endpoint_url=first.endpoint_url, api_key=first.api_key) as client:
            trigger = client.repository("restart/repo").sandbox_triggers.create(
                name="kept", conditions=[{"type": "prefix", "prefix": "in/"}], sandbox_config={"image": "i"}
            )
    with (
        LocalServer(data_dir=tmp_path) as second,
        Client(endpoint_url=second.endpoint_url, api_key=second.api_key) as client,
    ):
        assert [t.id for t in client.repository("restart/repo").sandbox_triggers.list()] == [trigger.id]


def test_triggers_fire_after_a_restart_without_touching_their_routes(tmp_path: Path) -> None:
    with LocalServer(data_dir=tmp_path) as first:
        _make_repo(first)
        with Client(endpoint_url=first.endpoint_url, api_key=first.api_key) as client:
            client.repository("restart/repo").sandbox_triggers.create(
                name="kept",
                conditions=[{"type": "prefix", "prefix": "in/"}],
                sandbox_config={"image": "i", "command": ["true"]},
            )
    with LocalServer(data_dir=tmp_path) as second:
        with Client(endpoint_url=second.endpoint_url, api_key=second.api_key) as client:
            repo = client.repository("restart/repo")
            with repo.session() as session:
                session.objects.put("in/a.csv", b"1")
                commit_id = session.commit("input")
            # Watch for the triggered sandbox without using the trigger routes (they install the listener).
            deadline = time.monotonic() + 5
            while not list(repo.sandboxes.list()) and time.monotonic() < deadline:
                time.sleep(0.05)
            [trigger] = list(repo.sandbox_triggers.list())
            runs = list(trigger.runs.list())
        assert [run.commit_id for run in runs] == [commit_id]
