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
from weed_s3 import S3Server, run_weed_mini

if TYPE_CHECKING:
    from tilde.server import LocalServer

# Test servers run sandboxes on the host's root filesystem whatever image a test names (the tests of OCI
# images, under tests/e2e/images, configure their servers explicitly). Set in the environment, so servers
# started as separate processes (`tilde-server serve`, the demo) behave the same.
os.environ.setdefault("TILDE_SERVER_HOST_IMAGE", "all")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A real tilde-server on a free loopback port, with its own data directory."""
    from tilde.server import LocalServer

    with LocalServer(data_dir=tmp_path_factory.mktemp("tilde-server")) as srv:
        yield srv


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
