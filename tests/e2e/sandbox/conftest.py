"""Fixtures for the sandbox end-to-end tests (helpers live in ``sandbox_helpers``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sandbox_helpers import Sandboxes


@pytest.fixture
def sandboxes(api: httpx.Client, repo_path: str, server: Any) -> Sandboxes:
    ws_base = server.endpoint_url.replace("http://", "ws://").rstrip("/") + "/api/v1"
    return Sandboxes(api, repo_path, ws_base, server.api_key)


@pytest.fixture
def service(sandboxes: Sandboxes) -> Iterator[Callable[..., str]]:
    """Start service sandboxes; any still running at the end of the test is cancelled."""
    started: list[str] = []

    def start(**body: Any) -> str:
        sandbox_id = sandboxes.service(**body)
        started.append(sandbox_id)
        return sandbox_id

    yield start
    for sandbox_id in started:
        if sandboxes.status(sandbox_id)["status"] in ("starting", "running"):
            sandboxes.api.delete(f"{sandboxes.base}/{sandbox_id}")
            sandboxes.wait(sandbox_id)
