"""The published client (tilde-sdk 0.7.9 from the package registry) against this server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tilde.server import LocalServer

SCRIPT = Path(__file__).with_name("published_client_script.py")


@pytest.mark.slow
def test_published_client_round_trip(published_python: Path, server: LocalServer, repo_path: str) -> None:
    result = subprocess.run(
        [str(published_python), str(SCRIPT), server.endpoint_url, server.api_key, repo_path],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(published_python.parent.parent)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "OK session put/get/commit",
        "OK list",
        "OK get",
        "OK delete/copy",
    ]
