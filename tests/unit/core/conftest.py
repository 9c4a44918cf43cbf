"""Fixtures for tilde-core's client-only tests: a mocked transport and a recorder for retry sleeps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from core_helpers import ENDPOINT, Handler

from tilde.core import Client


@pytest.fixture
def home() -> Path:
    """The isolated home directory tests/conftest.py points HOME at."""
    return Path.home()


@pytest.fixture
def config_file(home: Path) -> Path:
    """Where the config file lives (not created)."""
    path = home / ".tilde" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def sleeps() -> list[float]:
    """Delays the client asked to sleep for (the fake sleep records instead of waiting)."""
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[Callable[..., Client]]:
    """Build a `Client` whose traffic goes to a handler (e.g. a `Recorder`) and whose sleeps are recorded."""
    made: list[tuple[Client, httpx.Client]] = []

    def factory(handler: Handler, **kwargs: object) -> Client:
        http = httpx.Client(transport=httpx.MockTransport(handler))
        kwargs.setdefault("endpoint_url", ENDPOINT)
        kwargs.setdefault("api_key", "tuk-secret")
        client = Client(http_client=http, **kwargs)  # type: ignore[arg-type]
        client._sleep = sleeps.append
        made.append((client, http))
        return client

    yield factory
    for client, http in made:
        client.close()
        http.close()
