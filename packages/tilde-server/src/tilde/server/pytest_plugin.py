"""A pytest plugin for code that uses Tilde: a real local server per test, and repositories on demand.

Installed with tilde-server (entry point ``pytest11``), so its fixtures are available in every test suite of
an environment that has tilde-server, with nothing to configure:

- `tilde_server`: a fresh `LocalServer` (its own temporary data directory and admin key) with a `tilde.Client`
  configured for it, stopped and removed after the test;
- `tilde_client`: that client;
- `tilde_repo_factory`: creates repositories (and their organization) on that server and returns handles.

Every name starts with ``tilde_`` so it does not clash with a project's own fixtures. Nothing heavy is
imported until a fixture is used. See the testing guide for an example.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tilde.server.local import LocalServer

__all__ = ["TildeTestServer", "tilde_client", "tilde_repo_factory", "tilde_server"]


@dataclass
class TildeTestServer:
    """What the `tilde_server` fixture gives a test.

    Attributes:
        server: The running `LocalServer`.
        endpoint_url: Its base URL, e.g. ``http://127.0.0.1:40123``.
        api_key: The admin API key.
        data_dir: Its data directory (fresh, removed after the test).
        client: A ``tilde.Client`` for the server with the admin key (tilde-sdk's; closed after the test).

    """

    server: LocalServer
    endpoint_url: str
    api_key: str
    data_dir: Path
    client: Any


def _client(endpoint_url: str, api_key: str) -> Any:
    try:
        import tilde
    except ImportError:  # pragma: no cover - tilde-server alone
        raise pytest.UsageError("the tilde_server fixture needs tilde-sdk: pip install tilde-sdk") from None
    return tilde.Client(endpoint_url=endpoint_url, api_key=api_key)


@pytest.fixture
def tilde_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TildeTestServer]:
    """Start a fresh local Tilde server for one test, with an admin key and a configured ``tilde.Client``.

    Example::

        def test_orgs(tilde_server):
            tilde_server.client.organizations.create("acme", display_name="Acme")
    """
    from tilde.server.local import LocalServer

    data_dir = tmp_path_factory.mktemp("tilde-server")
    with LocalServer(data_dir=data_dir) as server:
        client = _client(server.endpoint_url, server.api_key)
        try:
            yield TildeTestServer(server, server.endpoint_url, server.api_key, data_dir, client)
        finally:
            client.close()


@pytest.fixture
def tilde_client(tilde_server: TildeTestServer) -> Any:
    """Return the ``tilde.Client`` of `tilde_server` (admin key)."""
    return tilde_server.client


@pytest.fixture
def tilde_repo_factory(tilde_server: TildeTestServer) -> Callable[..., Any]:
    """Create repositories on `tilde_server`: ``tilde_repo_factory("name")`` returns a ``tilde.Repository``.

    The call takes an optional repository name (default: a unique one), ``org=`` (default: one organization
    made for the test) and any keyword ``Repositories.create`` accepts (``description=`` ...).

    Example::

        def test_upload(tilde_repo_factory):
            repo = tilde_repo_factory("weather")
            with repo.session() as session:
                session.objects.put("a.txt", b"a")
                session.commit("add a")
    """
    client = tilde_server.client
    made: dict[str, Any] = {}

    def organization(name: str) -> Any:
        if name not in made:
            made[name] = client.organizations.create(name, display_name=name)
        return made[name]

    default_org = f"test-{uuid.uuid4().hex[:12]}"

    def make(name: str | None = None, *, org: str | None = None, **options: Any) -> Any:
        repo_name = name or f"repo-{uuid.uuid4().hex[:12]}"
        organization(org or default_org).repositories.create(repo_name, **options)
        return client.repository(f"{org or default_org}/{repo_name}")

    return make
