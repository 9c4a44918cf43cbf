from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx
from admin_helpers import BASE

import tilde.admin


@pytest.fixture
def client() -> Iterator[tilde.admin.Client]:
    with tilde.admin.Client(api_key="tuk-test", endpoint_url="http://tilde.test") as admin_client:
        yield admin_client


@pytest.fixture
def org(client: tilde.admin.Client) -> tilde.admin.Organization:
    return tilde.admin.Organization(client, name="acme")


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    # Every request must hit a mocked route, and every mocked route must be hit: a test can't pass by
    # sending nothing, or something else than it meant to.
    with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as mock:
        yield mock
