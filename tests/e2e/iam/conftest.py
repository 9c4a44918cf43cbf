"""Fixtures for the IAM end-to-end tests: one organization per module (helpers in ``iam_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from iam_helpers import IamOrg, unique

if TYPE_CHECKING:
    from tilde.server import LocalServer


@pytest.fixture(scope="session", params=["local", "postgres", "cluster"])
def server_backend(request: pytest.FixtureRequest) -> str:
    """This suite runs on the default backend, with the metadata on PostgreSQL, and on a cluster."""
    backend: str = request.param
    return backend


@pytest.fixture(scope="module")
def iam(server: LocalServer) -> Iterator[IamOrg]:
    """A fresh organization for the module, owned by the admin."""
    admin = httpx.Client(
        base_url=server.endpoint_url.rstrip("/") + "/api/v1",
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=60,
        # An object read on an S3 blob store (the cluster) answers 307 to the store: follow it like the SDK.
        follow_redirects=True,
    )
    name = unique("iam")
    assert admin.post("/organizations", json={"name": name, "display_name": name}).status_code == 201
    org = IamOrg(server, admin, name)
    try:
        yield org
    finally:
        for http in org.clients:
            http.close()
        admin.close()
