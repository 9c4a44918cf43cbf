"""A real tilde-server behind the fault-injecting proxy (its public URL is the proxy's: upload URLs too)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fault_proxy import PASS, FaultProxy

from tilde.data import Client, Repository
from tilde.server import LocalServer
from tilde.server.config import ServerConfig


def start_behind_proxy(data_dir: Path, **config: object) -> tuple[FaultProxy, LocalServer]:
    """Start a proxy, then a server whose public URL is the proxy's, and connect the two."""
    proxy = FaultProxy().__enter__()
    try:
        server = LocalServer(config=ServerConfig(data_dir=data_dir, public_url=proxy.url, **config))  # type: ignore[arg-type]
        server.__enter__()
    except BaseException:
        proxy.__exit__(None, None, None)
        raise
    proxy.connect("127.0.0.1", server.port)
    return proxy, server


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultProxy, LocalServer]]:
    """One server behind one proxy for the whole module."""
    proxy, server = start_behind_proxy(tmp_path_factory.mktemp("faults-server"))
    try:
        yield proxy, server
    finally:
        server.__exit__(None, None, None)
        proxy.__exit__(None, None, None)


@pytest.fixture
def proxy(behind_proxy: tuple[FaultProxy, LocalServer]) -> FaultProxy:
    """The proxy, passing everything and with no records, for this test to program."""
    proxy = behind_proxy[0]
    proxy.plan = lambda method, path, query, headers: PASS
    proxy.records.clear()
    return proxy


def new_repository(server: LocalServer) -> str:
    """Create an organization and a repository on ``server`` (directly, not through the proxy)."""
    name = f"faults-{uuid.uuid4().hex[:10]}"
    with httpx.Client(
        base_url=server.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {server.api_key}"}
    ) as api:
        api.post("/organizations", json={"name": name, "display_name": name}).raise_for_status()
        api.post(f"/organizations/{name}/repositories", json={"name": "data"}).raise_for_status()
    return f"{name}/data"


@pytest.fixture
def faulty_repo(behind_proxy: tuple[FaultProxy, LocalServer], proxy: FaultProxy) -> Iterator[Repository]:
    """A fresh repository reached through the proxy (generous retries: the proxy answers 503 in bursts)."""
    server = behind_proxy[1]
    path = new_repository(server)
    with Client(endpoint_url=proxy.url, api_key=server.api_key, max_retries=6) as client:
        yield client.repository(path)


@pytest.fixture
def direct_repo(
    behind_proxy: tuple[FaultProxy, LocalServer], faulty_repo: Repository
) -> Iterator[Repository]:
    """The same repository reached directly (to check what the server holds)."""
    server = behind_proxy[1]
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        yield client.repository(f"{faulty_repo.org}/{faulty_repo.name}")
