"""The async halves of the few things `AsyncClient` and `Client` do differently.

`tilde.core.client` is generated from `tilde.core.async_client` by renaming (``scripts/unasync.py``), which
maps this module to `tilde.core._sync_support`: every name here has a same-named counterpart there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from tilde.core.credentials import CredentialsProvider, StaticTokenProvider

SleepFunction = Callable[[float], Awaitable[None]]
"""How the client waits between retries."""


def default_sleep() -> SleepFunction:
    """Return the function the client waits with between retries: `anyio.sleep`."""
    # anyio is imported by the async client only, not by ``import tilde.data``.
    import anyio

    return anyio.sleep


def pool_lock() -> contextlib.AbstractContextManager[Any]:
    """Return the guard for creating the upload pool once: none is needed, the event loop runs one task."""
    return contextlib.nullcontext()


async def fetch_token(provider: CredentialsProvider) -> str:
    """Return the provider's token without blocking the event loop.

    A static token is returned directly; a provider's ``async def aget_token()`` is awaited; a token the
    provider already holds (``peek_token()``) is used as is; otherwise its blocking ``get_token`` runs in a
    worker thread, as it may do network I/O.
    """
    if isinstance(provider, StaticTokenProvider):
        return provider.get_token()
    aget_token = getattr(provider, "aget_token", None)
    if callable(aget_token):
        token: str = await aget_token()
        return token
    peek_token = getattr(provider, "peek_token", None)
    if callable(peek_token):
        cached = peek_token()
        if isinstance(cached, str) and cached:
            return cached
    # The provider may block on the network: keep the event loop free.
    import anyio.to_thread

    return await anyio.to_thread.run_sync(provider.get_token)
