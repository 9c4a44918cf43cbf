"""Fixtures for the ``tilde://`` filesystem's end-to-end tests: a filesystem on the shared real server."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tilde.data.fsspec import TildeFileSystem

if TYPE_CHECKING:
    from tilde.server import LocalServer


@pytest.fixture
def storage_options(server: LocalServer) -> dict[str, Any]:
    """What a data tool passes as ``storage_options`` to reach the test server."""
    return {"api_key": server.api_key, "endpoint_url": server.endpoint_url}


@pytest.fixture
def fs(storage_options: dict[str, Any]) -> Iterator[TildeFileSystem]:
    """A fresh filesystem (not fsspec's cached instance, so settings never leak between tests)."""
    filesystem = TildeFileSystem(skip_instance_cache=True, **storage_options)
    yield filesystem
    filesystem.close()


@pytest.fixture(autouse=True)
def _drop_cached_filesystems() -> Iterator[None]:
    """Forget the instances data tools made through fsspec's cache, closing their clients."""
    yield
    TildeFileSystem.clear_instance_cache()
    gc.collect()
