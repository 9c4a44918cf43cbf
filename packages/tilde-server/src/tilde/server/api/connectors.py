"""Connector routes (CONTRACT §4.7 #49-#55): organization connectors and their repository attachments.

A connector's ``config`` (credentials) goes in once, at creation, and never comes back out: responses carry
the contract's ConnectorInfo only. Deleting is soft: a deleted connector answers 410 afterwards.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api.common import read_json, require_principal, resolve_org, resolve_repo, run_sync
from tilde.server.connectors import ConnectorStore, check_connector
from tilde.server.connectors import install as install_connectors
from tilde.server.errors import ApiError

_ORG = "/organizations/{org}/connectors"
_REPO = "/organizations/{org}/repositories/{repo}/connectors"


def install(app: Starlette) -> None:
    """Open the connector store and start the import workers (`tilde.server.connectors.install`)."""
    install_connectors(app)


def store_of(request: Request) -> ConnectorStore:
    """Return the connector store (``app.state.connector_store``)."""
    store: ConnectorStore = request.app.state.connector_store
    return store


def connector_id_of(body: dict[str, Any]) -> str:
    """Return the body's ``connector_id`` (400 when missing or not a string)."""
    value = body.get("connector_id")
    if not isinstance(value, str) or not value:
        raise ApiError(400, "invalid_field", "connector_id must be a non-empty string")
    return value


async def list_connectors(request: Request) -> Response:
    """List the organization's connectors."""
    org = resolve_org(request, "ListConnectors")
    connectors = store_of(request).list_connectors(org.id)
    return JSONResponse({"results": [c.info() for c in connectors]})


async def create_connector(request: Request) -> Response:
    """Create a connector: 201 ConnectorInfo (400 bad name, type, URI or config; 409 name taken)."""
    org = resolve_org(request, "CreateConnector")
    principal = require_principal(request)
    spec = await run_sync(check_connector, await read_json(request))  # local ones look at the filesystem
    record = store_of(request).create_connector(
        org.id,
        name=spec.name,
        type=spec.type,
        source_uri=spec.source_uri,
        display_source=spec.display_source,
        config=spec.config,
        created_by_type=principal.type,
        created_by=principal.id,
    )
    return JSONResponse(record.info(), status_code=201)


async def get_connector(request: Request) -> Response:
    """Return one connector (404 unknown, 410 deleted)."""
    org = resolve_org(request, "GetConnector")
    return JSONResponse(store_of(request).get_connector(org.id, request.path_params["connector_id"]).info())


async def delete_connector(request: Request) -> Response:
    """Soft-delete a connector; it is detached from every repository."""
    org = resolve_org(request, "DeleteConnector")
    store_of(request).delete_connector(org.id, request.path_params["connector_id"])
    return Response(status_code=204)


async def list_repo_connectors(request: Request) -> Response:
    """List the connectors attached to the repository."""
    _, repo = resolve_repo(request, "ListConnectors")
    return JSONResponse({"results": [c.info() for c in store_of(request).attached(repo.id)]})


async def attach_connector(request: Request) -> Response:
    """Attach an organization connector to the repository (201 ConnectorInfo; idempotent)."""
    org, repo = resolve_repo(request, "AttachConnector")
    connector_id = connector_id_of(await read_json(request))
    store = store_of(request)
    connector = store.get_connector(org.id, connector_id)
    store.attach(repo.id, connector.id)
    return JSONResponse(connector.info(), status_code=201)


async def detach_connector(request: Request) -> Response:
    """Detach a connector from the repository (404 when it is not attached)."""
    _, repo = resolve_repo(request, "DetachConnector")
    connector_id = request.path_params["connector_id"]
    if not store_of(request).detach(repo.id, connector_id):
        raise ApiError(404, "not_found", f"connector {connector_id!r} is not attached to this repository")
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route(_ORG, list_connectors, methods=["GET"]),
    Route(_ORG, create_connector, methods=["POST"]),
    Route(_ORG + "/{connector_id}", get_connector, methods=["GET"]),
    Route(_ORG + "/{connector_id}", delete_connector, methods=["DELETE"]),
    Route(_REPO, list_repo_connectors, methods=["GET"]),
    Route(_REPO, attach_connector, methods=["POST"]),
    Route(_REPO + "/{connector_id}", detach_connector, methods=["DELETE"]),
]
