"""Fixtures for the command line's end-to-end tests: ``tilde …`` through click's runner against a real server.

The credentials reach the CLI the way a user's would: through ``TILDE_ENDPOINT_URL`` / ``TILDE_API_KEY`` (or a
config file under this test's own ``HOME``, which the root conftest isolates).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from cli_helpers import Cli

from tilde import Client

if TYPE_CHECKING:
    from tilde import Repository
    from tilde.server import LocalServer


@pytest.fixture(scope="session", params=["local", "cluster"])
def server_backend(request: pytest.FixtureRequest) -> str:
    """This suite runs on the default backend and again on a three-replica cluster (``tests/conftest.py``)."""
    backend: str = request.param
    return backend


@pytest.fixture
def cli(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Runs ``tilde`` commands as a user logged in with the server's admin key."""
    monkeypatch.setenv("TILDE_ENDPOINT_URL", server.endpoint_url)
    monkeypatch.setenv("TILDE_API_KEY", server.api_key)
    return Cli()


@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    """An SDK client, to set up and check what the commands did."""
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


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound once to find it, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
