"""Connectors and imports: organization connectors to outside data, and jobs importing it into repositories.

- `ConnectorStore` keeps connectors (credentials sealed with the server's master key), their repository
  attachments and import jobs, in tables of the registry's SQLite file.
- `ImportRunner` runs import jobs in worker threads; each ends in exactly one commit or changes nothing.
- Sources: ``s3`` through boto3 (maintained by the service's vendor, streaming bodies, paginators, any
  S3-compatible endpoint, typed through boto3-stubs; obstore was considered for throughput, but an import is
  bound by staging, not by reads), ``local`` (a directory on the server under the roots allowed by
  ``TILDE_SERVER_LOCAL_CONNECTOR_ROOTS``), and another repository (blobs reused, metadata only).

`install` wires all of it into an application; the routes live in `tilde.server.api.connectors` and
`tilde.server.api.imports`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette

from tilde.server.connectors.jobs import ImportRunner, source_base
from tilde.server.connectors.sources import (
    ImportFailed,
    LocalSource,
    RepositorySource,
    S3Source,
    SourceObject,
)
from tilde.server.connectors.spec import (
    LOCAL_ROOTS_ENV,
    SUPPORTED_TYPES,
    ConnectorSpec,
    check_connector,
    local_roots,
    parse_s3_uri,
)
from tilde.server.connectors.store import ConnectorRecord, ConnectorStore, ImportJobRecord

__all__ = [
    "LOCAL_ROOTS_ENV",
    "SUPPORTED_TYPES",
    "ConnectorRecord",
    "ConnectorSpec",
    "ConnectorStore",
    "ImportFailed",
    "ImportJobRecord",
    "ImportRunner",
    "LocalSource",
    "RepositorySource",
    "S3Source",
    "SourceObject",
    "check_connector",
    "install",
    "local_roots",
    "parse_s3_uri",
    "source_base",
]

logger = logging.getLogger("tilde.server.imports")


def install(app: Starlette) -> ImportRunner:
    """Open the connector store, fail jobs a previous run left unfinished, and start the import workers.

    Call it once per application (``create_app`` does). Afterwards ``app.state.connector_store`` and
    ``app.state.import_runner`` serve the routes. The workers stop when the application shuts down, before the
    engine and the registry close (the application's lifespan is wrapped for that).

    Args:
        app: The application (its ``state`` has ``config``, ``engine``, ``registry``, ``secret_box``).

    """
    from tilde.server.api.common import notify_commit  # the API layer sits above this package

    state = app.state
    store = ConnectorStore(state.config.database("registry"), state.secret_box)

    def on_commit(org_name: str, repo: Any, commit: Any) -> None:
        notify_commit(state, org_name, repo, commit)

    cluster = getattr(state, "cluster", None)
    if cluster is not None and cluster.enabled:
        # A replica of a cluster runs, recovers and stops only its own jobs (and recovers dead nodes').
        runner = ImportRunner(
            store,
            state.engine,
            state.registry,
            on_commit,
            node_id=cluster.node_id,
            node_alive=lambda node_id: cluster.node_url(node_id) is not None,
        )
    else:
        runner = ImportRunner(store, state.engine, state.registry, on_commit)
    recovered = runner.recover()
    if recovered:
        logger.warning("marked %d unfinished import jobs as failed", recovered)
    state.connector_store = store
    state.import_runner = runner
    outer = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Any]:
        async with outer(app) as value:
            try:
                yield value
            finally:
                # Inside the outer lifespan: stop the workers before it closes the engine and the registry.
                await anyio.to_thread.run_sync(runner.shutdown)
                store.close()

    app.router.lifespan_context = lifespan
    return runner
