"""The sync halves of the few things `Client` and `AsyncClient` do differently.

Counterpart of `tilde.core._async_support` (same names), for the generated `tilde.core.client`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from tilde.core.credentials import CredentialsProvider

SleepFunction = Callable[[float], None]
"""How the client waits between retries."""


def default_sleep() -> SleepFunction:
    """Return the function the client waits with between retries: `time.sleep`."""
    return time.sleep


def pool_lock() -> contextlib.AbstractContextManager[Any]:
    """Return the guard for creating the upload pool once: multipart uploads come from several threads."""
    return threading.Lock()


def fetch_token(provider: CredentialsProvider) -> str:
    """Return the provider's token (its ``get_token()``, which may block)."""
    return provider.get_token()
