"""Secrets of repositories and agents (CONTRACT #58-#65): ``R/secrets`` and ``O/agents/{name}/secrets``.

Lists carry metadata only; the single-secret ``GET`` is the one place a value leaves the server, with
``Cache-Control: no-store``. Values are never logged (see `tilde.server.secret_store`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._json import loads as json_loads
from tilde.server.api.common import registry_of, require_principal, resolve_org, resolve_repo, run_sync
from tilde.server.crypto import DecryptionError
from tilde.server.errors import ApiError
from tilde.server.secret_store import KEY_RE, MAX_REQUEST_BYTES, SecretRecord, SecretStore

REPO_SECRETS = "/organizations/{org}/repositories/{repo}/secrets"
AGENT_SECRETS = "/organizations/{org}/agents/{name}/secrets"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def store_of(request: Request) -> SecretStore:
    """Return the secret store (``app.state.secret_store``)."""
    store: SecretStore = request.app.state.secret_store
    return store


def _owner(request: Request, scope: str, action: str) -> str:
    """Authorize ``action`` and return the id of the repository or agent named in the path."""
    if scope == "repo":
        return resolve_repo(request, action)[1].id
    name = request.path_params["name"]
    org = resolve_org(request, action, agent=name)
    return registry_of(request).get_agent(org.id, name).id


def _key(request: Request) -> str:
    key: str = request.path_params["key"]
    if not KEY_RE.match(key):
        raise ApiError(400, "invalid_name", f"secret keys must match {KEY_RE.pattern}")
    return key


def _record_json(record: SecretRecord) -> dict[str, Any]:
    return {
        "key": record.key,
        "created_by_type": record.created_by_type,
        "created_by": record.created_by,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


async def _value(request: Request) -> str:
    """Return the ``value`` of a ``{value}`` body of at most `MAX_REQUEST_BYTES` (413/400 otherwise)."""
    declared = request.headers.get("content-length", "")
    too_large = ApiError(413, "payload_too_large", f"secret requests are limited to {MAX_REQUEST_BYTES} B")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise too_large
        chunks.append(chunk)
    body = json_loads(b"".join(chunks))
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object {value}")
    value = body.get("value")
    if not isinstance(value, str) or not value:
        raise ApiError(400, "invalid_field", "value must be a non-empty string")
    return value


async def list_secrets(request: Request, scope: str) -> Response:
    """List the secrets' metadata, by key (never values)."""
    owner_id = _owner(request, scope, "ListSecrets")
    records = await run_sync(store_of(request).list_secrets, scope, owner_id)
    return JSONResponse({"results": [_record_json(r) for r in records]})


async def get_secret(request: Request, scope: str) -> Response:
    """Return ``{key, value}``: the only response carrying a value, never cached."""
    owner_id = _owner(request, scope, "GetSecret")
    key = _key(request)
    try:
        value = await run_sync(store_of(request).get, scope, owner_id, key)
    except DecryptionError:
        # The server lacks the master key it was sealed with: its configuration, not the request, is wrong.
        raise ApiError(
            500, "undecryptable", f"secret {key!r} was sealed with a master key this server does not have"
        ) from None
    if value is None:
        raise ApiError(404, "not_found", f"secret {key!r} not found")
    return JSONResponse({"key": key, "value": value}, headers=_NO_STORE)


async def put_secret(request: Request, scope: str) -> Response:
    """Create a secret or replace its value; answers ``{key}``."""
    owner_id = _owner(request, scope, "PutSecret")
    key = _key(request)
    value = await _value(request)
    principal = require_principal(request)
    await run_sync(store_of(request).put, scope, owner_id, key, value, (principal.type, principal.id))
    return JSONResponse({"key": key})


async def delete_secret(request: Request, scope: str) -> Response:
    """Delete a secret (404 when there is none)."""
    owner_id = _owner(request, scope, "DeleteSecret")
    key = _key(request)
    if not await run_sync(store_of(request).delete, scope, owner_id, key):
        raise ApiError(404, "not_found", f"secret {key!r} not found")
    return Response(status_code=204)


def _routes(base: str, scope: str) -> list[BaseRoute]:
    async def list_(request: Request) -> Response:
        return await list_secrets(request, scope)

    async def get(request: Request) -> Response:
        return await get_secret(request, scope)

    async def put(request: Request) -> Response:
        return await put_secret(request, scope)

    async def delete(request: Request) -> Response:
        return await delete_secret(request, scope)

    return [
        Route(base, list_, methods=["GET"]),
        Route(base + "/{key}", get, methods=["GET"]),
        Route(base + "/{key}", put, methods=["PUT"]),
        Route(base + "/{key}", delete, methods=["DELETE"]),
    ]


routes: list[BaseRoute] = [*_routes(REPO_SECRETS, "repo"), *_routes(AGENT_SECRETS, "agent")]
