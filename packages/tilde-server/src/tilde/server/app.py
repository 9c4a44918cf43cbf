"""``create_app(config)``: the Starlette application with its stores, engine, auth and routes.

Shared objects on ``app.state`` (other parts of the server rely on these names):

- ``config`` (`ServerConfig`), ``registry`` (`Registry`), ``engine`` (`StorageEngine`), ``auth``
  (`Authenticator`), ``upload_secret`` (bytes), ``admin_key`` (str);
- ``token_resolvers``: list of ``(token) -> Principal | None`` consulted for tokens no stored key matches;
- ``commit_listeners``: list of ``(org_name, repo, commit) -> None`` called in a worker thread after every
  commit (see `tilde.server.api.common.notify_commit`); ``listener_executor`` runs them;
- ``runtime``: only when ``tilde.server.sandbox`` provides ``make_runtime(config, engine, app)``. On startup
  an async ``runtime.start()`` is awaited if it exists; on shutdown ``runtime.aclose()`` or ``close()``.

Route modules in ``tilde.server.api`` expose ``routes`` relative to ``/api/v1``; the compute modules
(``sandboxes``, ``exec``, ``triggers``) are included when they exist.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from tilde.server._ids import rfc3339
from tilde.server.api import agents, commits, objects, orgs, repos, sessions, uploads
from tilde.server.auth import Authenticator, AuthMiddleware, TokenResolver
from tilde.server.config import (
    REGISTRY_FILE,
    ServerConfig,
    load_or_create_admin_key,
    load_or_create_upload_secret,
)
from tilde.server.errors import RequestIdMiddleware, exception_handlers
from tilde.server.registry import Registry
from tilde.server.storage import StorageEngine

logger = logging.getLogger("tilde.server")

API_PREFIX = "/api/v1"
#: Route modules owned by the compute side of the server; optional.
OPTIONAL_ROUTE_MODULES = ("sandboxes", "exec", "triggers")


def _optional_module(name: str) -> Any | None:
    """Import ``name`` or return None when that module (not one of its imports) does not exist."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None
        raise


def _api_routes() -> tuple[list[BaseRoute], list[BaseRoute]]:
    """Return ``(relative, absolute)`` API routes: relative ones get mounted under ``/api/v1``."""
    relative: list[BaseRoute] = []
    absolute: list[BaseRoute] = []
    modules: list[Any] = [orgs, repos, sessions, objects, uploads, commits, agents]
    for name in OPTIONAL_ROUTE_MODULES:
        module = _optional_module(f"tilde.server.api.{name}")
        if module is not None:
            modules.append(module)
    for module in modules:
        for route in getattr(module, "routes", []):
            path = getattr(route, "path", "")
            (absolute if path.startswith(API_PREFIX + "/") else relative).append(route)
    return relative, absolute


def create_app(config: ServerConfig) -> Starlette:
    """Build the application for ``config`` (opens the registry and the engine in ``config.data_dir``).

    Args:
        config: Server settings; ``admin_key`` None reads or generates the stored key.

    """
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry(data_dir / REGISTRY_FILE)
    admin_key = config.admin_key or load_or_create_admin_key(data_dir)[0]
    if not registry.has_token(admin_key):
        registry.create_key("user", registry.admin.id, admin_key, name="admin")
    engine = StorageEngine.open(data_dir)
    # Upload tokens live a week; finished uploads nobody finalized since then can never be used.
    registry.forget_uploads_before(rfc3339(datetime.now(timezone.utc) - timedelta(seconds=uploads.TOKEN_TTL)))
    token_resolvers: list[TokenResolver] = []
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tilde-commit-listener")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = getattr(app.state, "runtime", None)
        start = getattr(runtime, "start", None)
        if start is not None and inspect.iscoroutinefunction(start):
            await start()
        try:
            yield
        finally:
            await _close_runtime(runtime)
            executor.shutdown(wait=True)
            engine.close()
            registry.close()

    relative, absolute = _api_routes()
    routes: list[BaseRoute] = [
        Route("/healthz", _healthz, methods=["GET"]),
        *uploads.root_routes,
        *absolute,
        Mount(API_PREFIX, routes=relative),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware), Middleware(AuthMiddleware, prefix=API_PREFIX)],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.registry = registry
    app.state.engine = engine
    app.state.auth = Authenticator(registry, token_resolvers)
    app.state.token_resolvers = token_resolvers
    app.state.commit_listeners = []
    app.state.listener_executor = executor
    app.state.upload_secret = load_or_create_upload_secret(data_dir)
    app.state.admin_key = admin_key
    sandbox = _optional_module("tilde.server.sandbox")
    make_runtime = getattr(sandbox, "make_runtime", None)
    if make_runtime is not None:
        app.state.runtime = make_runtime(config, engine, app)
    triggers = _optional_module("tilde.server.sandbox.triggers")
    install_triggers = getattr(triggers, "install", None)
    if install_triggers is not None:
        # Triggers must fire on the first commit after start-up, not only once a trigger route was used.
        install_triggers(app)
    return app


async def _close_runtime(runtime: Any) -> None:
    if runtime is None:
        return
    try:
        aclose = getattr(runtime, "aclose", None)
        if aclose is not None:
            await aclose()
        elif hasattr(runtime, "close"):
            runtime.close()
    except Exception:
        logger.exception("closing the sandbox runtime failed")


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})
