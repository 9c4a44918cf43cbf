"""Fixtures for the secrets end-to-end tests: an agent with a key, and an unauthenticated client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from secrets_helpers import make_agent


@pytest.fixture(scope="session", params=["local", "postgres", "cluster"])
def server_backend(request: pytest.FixtureRequest) -> str:
    """This suite runs on the default backend, with the metadata on PostgreSQL, and on a cluster."""
    backend: str = request.param
    return backend


@pytest.fixture
def agent(api: httpx.Client, org_name: str) -> dict[str, Any]:
    return make_agent(api, org_name, "robot")


@pytest.fixture
def raw(server: Any) -> Iterator[httpx.Client]:
    """An unauthenticated client on ``/api/v1`` (pass headers per request)."""
    with httpx.Client(base_url=server.endpoint_url.rstrip("/") + "/api/v1", timeout=60) as http:
        yield http
