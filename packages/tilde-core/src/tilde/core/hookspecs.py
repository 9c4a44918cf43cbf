"""Hook specifications of tilde-core (pluggy project name ``"tilde"``).

Plugins are objects or modules with functions marked ``@hookimpl``; third-party ones are distributions
exposing an entry point in the ``tilde_sdk.plugins`` group. See `tilde.core.plugins` for how they are loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from tilde.core.auth import AuthProvider

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec", "tilde_register_auth_providers"]

PROJECT_NAME = "tilde"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def tilde_register_auth_providers(register: Callable[[AuthProvider], None]) -> None:
    """Offer token sources to the client.

    Called once by every client when it is constructed, on every registered plugin (not ``firstresult``;
    the return value is ignored). Implementations call ``register(provider)`` once per
    `tilde.core.auth.AuthProvider` they offer.

    The client then asks the providers, in registration order, for credentials for its
    `tilde.core.auth.AuthSettings`; the first that returns a `tilde.core.credentials.CredentialsProvider`
    supplies every token, and the rest are not asked. The built-in sources register through this same hook:
    ``argument``, ``environment`` and ``config-file`` from a ``tryfirst`` implementation (so a deliberately
    set key always wins), ``sandbox`` from a ``trylast`` one (the automatic fallback inside sandboxes).
    Third-party providers are asked in between, in pluggy's call order (later-registered plugins first).

    Args:
        register: Call with each provider to add it to the chain.

    """
