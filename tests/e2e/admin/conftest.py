"""Fixtures for the published README's admin sections: the SDK's module-level shortcuts and a user's key.

The S3 server these tests import from is the session's ``s3_server`` (``tests/conftest.py``, `weed_s3`).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

import tilde

if TYPE_CHECKING:
    from tilde.server import LocalServer


@pytest.fixture(scope="session", params=["local", "postgres", "cluster"])
def server_backend(request: pytest.FixtureRequest) -> str:
    """This suite runs on the default backend, with the metadata on PostgreSQL, and on a cluster."""
    backend: str = request.param
    return backend


@pytest.fixture
def admin_sdk(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the module-level ``tilde.*`` shortcuts at the test server with its admin key.

    The README's snippets use ``tilde.organizations`` without configuring anything, relying on
    ``TILDE_API_KEY`` and ``TILDE_ENDPOINT_URL``; so do these tests.
    """
    monkeypatch.setenv("TILDE_API_KEY", server.api_key)
    monkeypatch.setenv("TILDE_ENDPOINT_URL", server.endpoint_url)
    tilde._default_client = None
    yield
    default = tilde._default_client
    tilde._default_client = None
    if default is not None:
        default.close()


@pytest.fixture
def user_key(server: LocalServer) -> str:
    """The ``tuk-`` key of a new human user, created the documented way (``tilde-server user create``)."""
    name = f"user-{uuid.uuid4().hex[:10]}"
    created = subprocess.run(
        [sys.executable, "-m", "tilde.server", "user", "create", name, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    keys = [word for word in created.stdout.split() if word.startswith("tuk-")]
    assert len(keys) == 1, "user create prints exactly one key"
    return keys[0]
