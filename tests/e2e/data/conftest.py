"""Fixtures for the data layer's end-to-end tests: a `tilde.data.Client` on the shared real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tilde.data import Client, Repository

if TYPE_CHECKING:
    from tilde.server import LocalServer


@pytest.fixture(scope="session", params=["local", "s3", "postgres", "cluster"])
def server_backend(request: pytest.FixtureRequest) -> str:
    """This suite runs on the default backend, with blobs on S3, with metadata on PostgreSQL, on a cluster."""
    backend: str = request.param
    return backend


@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    """A data-layer client authenticated with the server's admin key."""
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as c:
        yield c


@pytest.fixture
def repo(client: Client, repo_path: str) -> Repository:
    """A handle on this test's fresh repository."""
    return client.repository(repo_path)


@pytest.fixture
def seeded(repo: Repository) -> Repository:
    """The repository with one commit holding ``a.txt``, ``dir/b.txt`` and ``dir/sub/c.txt``."""
    with repo.session() as session:
        session.objects.put("a.txt", b"alpha")
        session.objects.put("dir/b.txt", b"bravo")
        session.objects.put("dir/sub/c.txt", b"charlie")
        session.commit("seed")
    return repo
