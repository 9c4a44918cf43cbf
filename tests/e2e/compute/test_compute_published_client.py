"""The published client (tilde-sdk 0.7.9 from the package registry): shells, execute and triggers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tilde.server import LocalServer

SCRIPT = Path(__file__).with_name("published_compute_script.py")
PUBLISHED = "tilde-sdk==0.7.9"
REGISTRY_DOWN = (
    "Could not find a version",
    "No matching distribution",
    "Network is unreachable",
    "Max retries",
)


@pytest.fixture(scope="module")
def published_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("published-compute") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", PUBLISHED],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        output = install.stdout + install.stderr
        if any(marker in output for marker in REGISTRY_DOWN):
            pytest.skip(f"package registry unreachable: {output.strip()[-300:]}")
        pytest.fail(f"pip install {PUBLISHED} failed:\n{output}")
    return python


@pytest.mark.slow
@pytest.mark.sandbox
def test_published_client_shell_execute_and_triggers(
    published_python: Path, server: LocalServer, repo_path: str
) -> None:
    result = subprocess.run(
        [str(published_python), str(SCRIPT), server.endpoint_url, server.api_key, repo_path],
        capture_output=True,
        text=True,
        timeout=280,
        env={"PATH": "/usr/bin:/bin", "HOME": str(published_python.parent.parent)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["OK shell", "OK execute", "OK triggers"]
