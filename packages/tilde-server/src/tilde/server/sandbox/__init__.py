"""The sandbox runtime: bubblewrap sandboxes over an overlay of the repository, with an in-sandbox agent.

`make_runtime` is what ``create_app`` calls; it puts a `SandboxRuntime` on ``app.state.runtime``, registers
the runtime's ``tst-`` token resolver and its commit listener (which prepares lower trees of new commits), and
learns the server's own address from incoming requests (the in-sandbox API relay connects there).
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from tilde.server.sandbox.runtime import SandboxRuntime
from tilde.server.sandbox.settings import SandboxSettings
from tilde.server.sandbox.spec import SandboxSpec, parse_spec

__all__ = ["SandboxRuntime", "SandboxSettings", "SandboxSpec", "make_runtime", "parse_spec"]


class _ServerAddressProbe:
    """ASGI middleware telling the runtime the address the server listens on (from connection scopes)."""

    def __init__(self, app: ASGIApp, runtime: SandboxRuntime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("server"):
            self.runtime.note_server_address(scope["server"])
        await self.app(scope, receive, send)


def make_runtime(config: Any, engine: Any, app: Any) -> SandboxRuntime:
    """Build the runtime for an application.

    Args:
        config: The `ServerConfig` (its ``sandbox`` mapping holds `SandboxSettings` fields).
        engine: The storage engine.
        app: The Starlette application; ``app.state.token_resolvers`` gets the runtime's resolver.

    Returns:
        The runtime (the caller stores it as ``app.state.runtime``).

    """
    runtime = SandboxRuntime(config, engine, app.state)
    resolvers = getattr(app.state, "token_resolvers", None)
    if resolvers is not None:
        resolvers.append(runtime.tokens.resolve)
    listeners = getattr(app.state, "commit_listeners", None)
    if listeners is not None:
        listeners.append(runtime.on_commit)
    add_middleware = getattr(app, "add_middleware", None)
    if add_middleware is not None:
        add_middleware(_ServerAddressProbe, runtime=runtime)
    return runtime
