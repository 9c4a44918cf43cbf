from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fresh_default_client() -> Iterator[None]:
    """Every test starts and ends without a module-level default client."""
    import tilde

    tilde._default_client = None
    yield
    if tilde._default_client is not None:
        tilde._default_client.close()
    tilde._default_client = None
