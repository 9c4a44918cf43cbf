"""The SDK's end-to-end tests run on the default backend and again on a three-replica cluster."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", params=["local", "cluster"])
def server_backend(request: pytest.FixtureRequest) -> str:
    """This suite runs on the default backend and again on a three-replica cluster (``tests/conftest.py``)."""
    backend: str = request.param
    return backend
