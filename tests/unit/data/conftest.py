"""Fixtures for the data layer's client-only tests (respx mocks; no server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from tilde.data import Client

ENDPOINT = "http://tilde.test"
BASE = f"{ENDPOINT}/api/v1"
REPO = f"{BASE}/organizations/acme/repositories/data"


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(endpoint_url=ENDPOINT, api_key="tuk-test", max_retries=0) as c:
        yield c
