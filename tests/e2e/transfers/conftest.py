"""Fixtures for the folder-transfer end-to-end tests (helpers live in ``transfers_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tilde.data import Client, Repository

if TYPE_CHECKING:
    from tilde.server import LocalServer


@pytest.fixture(scope="session", params=["local", "s3", "cluster"])
def server_backend(request: pytest.FixtureRequest) -> str:
    """This suite runs on the default backend, with blobs on S3, and on a three-replica cluster."""
    backend: str = request.param
    return backend


@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    """A data-layer client authenticated with the server's admin key (its capabilities not yet asked)."""
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as c:
        yield c


@pytest.fixture
def repo(client: Client, repo_path: str) -> Repository:
    """A handle on this test's fresh repository."""
    return client.repository(repo_path)


@pytest.fixture
def requests_seen(client: Client) -> list[tuple[str, str]]:
    """Every ``(method, path)`` the client's API connection sends, recorded by an httpx event hook."""
    seen: list[tuple[str, str]] = []

    def record(request: httpx.Request) -> None:
        seen.append((request.method, request.url.path))

    client._http.event_hooks["request"].append(record)
    return seen


@pytest.fixture
def batches_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the server's batch routes off for this test (they answer 404, as on a server without them)."""
    monkeypatch.setenv("TILDE_SERVER_BATCH_UPLOADS", "0")
