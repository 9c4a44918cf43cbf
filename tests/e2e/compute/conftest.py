"""Fixtures for the compute end-to-end tests: the SDK (``tilde.compute.Client``) against the real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tilde.compute import Client, Repository, Shell


@pytest.fixture(scope="session", params=["local", "s3", "cluster"])
def server_backend(request: pytest.FixtureRequest) -> str:
    """This suite runs on the default backend, with blobs on S3, and on a three-replica cluster."""
    backend: str = request.param
    return backend


@pytest.fixture
def client(server: Any) -> Iterator[Client]:
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as c:
        yield c


@pytest.fixture
def repo(client: Client, repo_path: str) -> Repository:
    return client.repository(repo_path)


@pytest.fixture
def shell(repo: Repository) -> Iterator[Shell]:
    """A running shell, cancelled (and waited for) at the end of the test."""
    sh = repo.shell()
    sh.wait_until_running(timeout=60)
    yield sh
    if sh.status().is_active:
        sh.cancel()
    sh.sandbox.wait(timeout=60)


@pytest.fixture
def seed(repo: Repository) -> Callable[[dict[str, bytes]], str]:
    """Commit objects to the repository; returns the commit id."""

    def put(objects: dict[str, bytes], message: str = "seed") -> str:
        with repo.session() as session:
            for path, data in objects.items():
                session.objects.put(path, data)
            commit_id = session.commit(message)
        assert commit_id
        return commit_id

    return put


def head_id(repo: Repository) -> str | None:
    return next((commit.id for commit in repo.commits.list(amount=1)), None)


@pytest.fixture
def head(repo: Repository) -> Callable[[], str | None]:
    return lambda: head_id(repo)
