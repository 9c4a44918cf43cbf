"""``create_app(config)``: the Starlette application with its stores, engine, auth and routes.

Shared objects on ``app.state`` (other parts of the server rely on these names):

- ``config`` (`ServerConfig`), ``registry`` (`Registry`), ``engine`` (`StorageEngine`), ``auth``
  (`Authenticator`), ``upload_secret`` (bytes), ``admin_key`` (str), ``secret_box`` (`SecretBox`, encryption
  at rest under the master key);
- ``token_resolvers``: list of ``(token) -> Principal | None`` consulted for tokens no stored key matches;
- ``commit_listeners``: list of ``(org_name, repo, commit) -> None`` called in a worker thread after every
  commit (see `tilde.server.api.common.notify_commit`); ``listener_executor`` runs them; ``commit_journal``:
  the same kind of callables, run before the request is answered (a cluster's trigger queue);
- ``listing_cache`` (`tilde.server.api._listing_cache.ListingCache`): encoded listing pages of commits;
- ``housekeeping`` (`tilde.server.cluster.housekeeping.Housekeeping`): the blob garbage collection and the
  upload clean-up, run at start-up (and, in a cluster, hourly on one replica at a time);
- ``runtime``: the sandbox runtime (`tilde.server.sandbox.make_runtime`), closed on shutdown;
- ``cluster`` (`tilde.server.cluster.Cluster`): this node and its peers (a node alone on SQLite), left on
  shutdown after the runtime closed.

Route modules in ``tilde.server.api`` expose ``routes`` relative to ``/api/v1`` (a route whose path already
starts with ``/api/v1/`` is mounted as it is).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server._ids import rfc3339
from tilde.server._private import private_dir
from tilde.server._routing import hot_routes_first, under_prefix
from tilde.server.api import (
    agents,
    batch_transfers,
    commits,
    connectors,
    exec,
    groups,
    imports,
    objects,
    orgs,
    policies,
    repos,
    sandboxes,
    secrets,
    sessions,
    triggers,
    upload_parts,
    uploads,
)
from tilde.server.api._listing_cache import ListingCache
from tilde.server.auth import Authenticator, AuthMiddleware, TokenResolver
from tilde.server.cluster import Cluster, derive_secret, make_cluster, resolve_node_id
from tilde.server.cluster import forward as cluster_forward
from tilde.server.cluster.blobstore import blob_store_identity, check_blob_store
from tilde.server.cluster.housekeeping import Housekeeping
from tilde.server.cluster.settings import load_shared_secrets
from tilde.server.config import (
    ServerConfig,
    load_or_create_admin_key,
    load_or_create_upload_secret,
    remember_blob_store,
    remember_database_url,
)
from tilde.server.crypto import SecretBox, load_master_keys
from tilde.server.errors import RequestIdMiddleware, exception_handlers
from tilde.server.openapi import openapi_endpoint
from tilde.server.registry import Registry
from tilde.server.sandbox import SandboxRuntime, make_runtime
from tilde.server.sandbox import triggers as trigger_dispatch
from tilde.server.secret_store import install as install_secrets
from tilde.server.storage import StorageEngine
from tilde.server.storage.blobs import BlobStore

if TYPE_CHECKING:
    from tilde.server.storage.s3blobs import S3BlobStore

logger = logging.getLogger("tilde.server")

API_PREFIX = "/api/v1"
_ROUTE_MODULES = (
    orgs,
    repos,
    sessions,
    objects,
    uploads,
    upload_parts,
    batch_transfers,
    commits,
    agents,
    groups,
    policies,
    secrets,
    connectors,
    imports,
    sandboxes,
    exec,
    triggers,
)


def _api_routes() -> tuple[list[BaseRoute], list[BaseRoute]]:
    """Return ``(relative, absolute)`` API routes: relative ones get mounted under ``/api/v1``."""
    relative: list[BaseRoute] = []
    absolute: list[BaseRoute] = []
    for module in _ROUTE_MODULES:
        for route in module.routes:
            path = getattr(route, "path", "")
            (absolute if path.startswith(API_PREFIX + "/") else relative).append(route)
    return relative, absolute


def create_app(config: ServerConfig) -> Starlette:
    """Build the application for ``config`` (opens the registry and the engine in ``config.data_dir``).

    Start-up forgets single uploads older than their token and deletes blobs nothing refers to any more.

    Args:
        config: Server settings; ``admin_key`` None reads or generates the stored key.

    """
    data_dir = config.data_dir
    private_dir(data_dir)
    config.database_url = remember_database_url(data_dir, config.database_url)
    if config.database_url:
        # This node's id, resolved once (made and remembered on a first start): the blob store check, the
        # housekeeping records and the cluster all use it.
        config.node_id = resolve_node_id(data_dir, config.node_id)
    master_keys = load_master_keys(data_dir)
    # Replicas sharing a PostgreSQL database share the upload and cluster secrets and check the master key.
    shared = load_shared_secrets(config.database_url, data_dir, master_keys) if config.database_url else None
    # A cluster replica whose blobs are not the cluster's refuses here, before it changes anything.
    blobs = _blob_store(config)
    registry = Registry(config.database("registry"))
    admin_key = config.admin_key or load_or_create_admin_key(data_dir)[0]
    if not registry.has_token(admin_key):
        registry.create_key("user", registry.admin.id, admin_key, name="admin")
    engine = StorageEngine.open(data_dir, blobs=blobs, database_url=config.database_url)
    # SQLite: at start-up. A cluster: at start-up and hourly, each job on one replica at a time.
    housekeeping = _housekeeping(config, registry, engine)
    housekeeping.run_once()
    token_resolvers: list[TokenResolver] = []
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tilde-commit-listener")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            app.state.trigger_dispatcher.close()
            housekeeping.close()
            await _close_runtime(app.state.runtime)
            await cluster_forward.aclose(app)
            await _leave_cluster(app.state.cluster)
            executor.shutdown(wait=True)
            engine.close()
            registry.close()

    relative, absolute = _api_routes()
    # The API routes are tried first (almost every request is for one; no other path starts with their
    # prefix), the busiest at the front, each with its full path: no mount, so no second router per request.
    routes: list[BaseRoute] = [
        *absolute,
        *under_prefix(API_PREFIX, hot_routes_first(relative)),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        *uploads.root_routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware), Middleware(AuthMiddleware, prefix=API_PREFIX)],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    if config.blob_store:
        from tilde.server.api._direct import blob_store_unavailable
        from tilde.server.storage.s3blobs import BlobStoreUnavailable

        app.add_exception_handler(BlobStoreUnavailable, blob_store_unavailable)
    app.state.config = config
    app.state.registry = registry
    app.state.engine = engine
    app.state.auth = Authenticator(registry, token_resolvers)
    app.state.listing_cache = ListingCache()
    app.state.token_resolvers = token_resolvers
    app.state.commit_listeners = []
    app.state.listener_executor = executor
    app.state.upload_secret = shared.upload_secret if shared else load_or_create_upload_secret(data_dir)
    app.state.admin_key = admin_key
    app.state.secret_box = SecretBox(master_keys)
    install_secrets(app)  # app.state.secret_store and the sandboxes' secret environment
    if not config.sandboxes:
        config.sandbox = {**config.sandbox, "enabled": False}
    cluster_secret = shared.cluster_secret if shared else derive_secret(app.state.upload_secret, "cluster")
    app.state.cluster = make_cluster(config, secret=cluster_secret)
    app.state.runtime = make_runtime(config, engine, app)
    app.state.housekeeping = housekeeping
    housekeeping.start()
    cluster_forward.install(app)  # a cluster node verifies the requests other nodes forward to it
    # Triggers must fire on the first commit after start-up, not only once a trigger route was used.
    trigger_dispatch.install(app)
    connectors.install(app)
    if housekeeping.shared:
        # Imports a dead replica was running are failed and rolled back by a live one.
        housekeeping.jobs.append(("import-recovery", app.state.import_runner.recover))
    return app


def _housekeeping(config: ServerConfig, registry: Registry, engine: StorageEngine) -> Housekeeping:
    """Return the server's housekeeping jobs: the upload clean-up, then the blob garbage collection."""

    def forget_uploads() -> None:
        # Upload URLs and tokens live upload_url_ttl: older targets and tombstones can never be used.
        registry.forget_uploads_before(
            rfc3339(datetime.now(timezone.utc) - timedelta(seconds=config.upload_url_ttl))
        )

    def collect_garbage() -> None:
        # Drop bytes nothing refers to any more (rolled-back sessions, replaced uploads, concatenated parts).
        # The blobs of single uploads still waiting for their finalize are known only to the registry.
        collected = engine.collect_garbage(keep=registry.pending_upload_blob_keys())
        if collected:
            logger.info("deleted %d unreferenced blobs", collected)

    return Housekeeping(
        [("upload-cleanup", forget_uploads), ("blob-gc", collect_garbage)],
        database_url=config.database_url,
        node=config.node_id or "",
    )


def _blob_store(config: ServerConfig) -> BlobStore | None:
    """Return the configured blob store, or None for the default (files under ``data_dir/blobs``).

    A cluster replica's blob store must be the cluster's (`tilde.server.cluster.blobstore`): the first
    replica records its store once the store opened; a replica with another one is refused here.
    """
    if not config.blob_store:
        # A data directory once served with a blob store keeps using it.
        config.blob_store, config.s3_endpoint_url = remember_blob_store(
            config.data_dir, None, config.s3_endpoint_url
        )
    store: S3BlobStore | None = None
    if config.blob_store:
        from tilde.server.storage.s3blobs import open_s3_blob_store

        store = open_s3_blob_store(
            config.blob_store,
            cache_dir=config.data_dir / "blob-cache",
            cache_bytes=config.blob_cache_bytes,
            endpoint_url=config.s3_endpoint_url,
            region=config.s3_region,
            credentials=config.s3_credentials,
            public_endpoint_url=config.s3_public_endpoint_url,
        )
    if config.database_url:
        node_id = config.node_id
        assert node_id is not None  # resolved by create_app on PostgreSQL
        try:
            check_blob_store(
                config.database_url,
                blob_store_identity(config.blob_store, config.s3_endpoint_url, node_id),
                node_id,
            )
        except BaseException:
            if store is not None:
                store.close()
            raise
    if config.blob_store:
        remember_blob_store(config.data_dir, config.blob_store, config.s3_endpoint_url)  # it opened: keep it
    return store


async def _close_runtime(runtime: SandboxRuntime) -> None:
    try:
        await runtime.aclose()
    except Exception:
        logger.exception("closing the sandbox runtime failed")


async def _leave_cluster(cluster: Cluster) -> None:
    try:
        await asyncio.to_thread(cluster.close)
    except Exception:
        logger.exception("leaving the cluster failed")


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})
