"""Agents, roles and their API keys (CONTRACT #85-#101).

Agents and roles belong to one organization and may only act in it. Agent keys start with ``tak-``, role
keys with ``trk-``; the clear token is returned once, at creation.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._validate import check_name, opt_str, str_map
from tilde.server.api.common import (
    page_params,
    paged,
    read_json,
    registry_of,
    require_principal,
    resolve_org,
)
from tilde.server.api.policies import check_policy_text
from tilde.server.api.serialize import agent_json, key_json, role_json
from tilde.server.auth import new_token
from tilde.server.errors import ApiError
from tilde.server.iam.policy import MAX_POLICY_CHARS

ORG = "/organizations/{org}"


def _creator(request: Request) -> tuple[str, str, str]:
    principal = require_principal(request)
    return principal.type, principal.id, principal.name


def _metadata(body: dict[str, Any]) -> dict[str, str] | None:
    """Return the ``metadata`` field: an object of string values, as the Agent entity defines it (400)."""
    return str_map(body, "metadata")


# -- roles -----------------------------------------------------------------------------------------


async def list_roles(request: Request) -> Response:
    """List an organization's roles by name."""
    org = resolve_org(request, "ListRoles")
    amount, after = page_params(request)
    roles, more = registry_of(request).list_roles(org.id, after, amount)
    return paged([role_json(r) for r in roles], more, roles[-1].name if roles else None)


async def create_role(request: Request) -> Response:
    """Create a role."""
    org = resolve_org(request, "CreateRole")
    body = await read_json(request)
    name = check_name(body.get("name"), "name")
    description = opt_str(body, "description", "") or ""
    role = registry_of(request).create_role(org.id, name, description, _creator(request))
    return JSONResponse(role_json(role), status_code=201)


async def get_role(request: Request) -> Response:
    """Return one role."""
    name = request.path_params["name"]
    org = resolve_org(request, "GetRole", role=name)
    return JSONResponse(role_json(registry_of(request).get_role(org.id, name)))


async def delete_role(request: Request) -> Response:
    """Delete a role, revoke its keys and drop its group memberships and attachments."""
    name = request.path_params["name"]
    org = resolve_org(request, "DeleteRole", role=name)
    registry = registry_of(request)
    registry.delete_role(registry.get_role(org.id, name).id)
    return Response(status_code=204)


# -- agents ----------------------------------------------------------------------------------------


async def list_agents(request: Request) -> Response:
    """List an organization's agents by name."""
    org = resolve_org(request, "ListAgents")
    amount, after = page_params(request)
    agents, more = registry_of(request).list_agents(org.id, after, amount)
    return paged([agent_json(a) for a in agents], more, agents[-1].name if agents else None)


async def create_agent(request: Request) -> Response:
    """Create an agent (its rights will never exceed its creator's)."""
    org = resolve_org(request, "CreateAgent")
    body = await read_json(request)
    name = check_name(body.get("name"), "name")
    description = opt_str(body, "description", "") or ""
    agent = registry_of(request).create_agent(
        org.id, name, description, _metadata(body) or {}, _creator(request)
    )
    return JSONResponse(agent_json(agent), status_code=201)


async def get_agent(request: Request) -> Response:
    """Return one agent."""
    name = request.path_params["name"]
    org = resolve_org(request, "GetAgent", agent=name)
    return JSONResponse(agent_json(registry_of(request).get_agent(org.id, name)))


async def update_agent(request: Request) -> Response:
    """Update an agent's description, metadata or inline policy (``""`` clears the policy).

    An inline policy that does not validate is refused (400, naming the first error's line and column).
    """
    name = request.path_params["name"]
    org = resolve_org(request, "UpdateAgent", agent=name)
    body = await read_json(request, optional=True)
    registry = registry_of(request)
    agent = registry.get_agent(org.id, name)
    changes: dict[str, Any] = {}
    for key in ("description", "inline_policy"):
        if body.get(key) is not None:
            changes[key] = opt_str(body, key, max_len=MAX_POLICY_CHARS)
    if changes.get("inline_policy"):
        check_policy_text(changes["inline_policy"], "inline_policy")
    metadata = _metadata(body)
    if metadata is not None:
        changes["metadata"] = metadata
    return JSONResponse(agent_json(registry.update_agent(agent.id, changes)))


async def delete_agent(request: Request) -> Response:
    """Delete an agent, revoke its keys and drop its group memberships and attachments."""
    name = request.path_params["name"]
    org = resolve_org(request, "DeleteAgent", agent=name)
    registry = registry_of(request)
    registry.delete_agent(registry.get_agent(org.id, name).id)
    return Response(status_code=204)


# -- API keys of agents and roles ------------------------------------------------------------------


def _key_owner(request: Request, kind: str, action: str) -> tuple[str, str]:
    """Authorize ``action`` and return ``(principal_type, principal_id)`` of the agent or role in the path."""
    name = request.path_params["name"]
    org = resolve_org(request, action, **{kind: name})
    registry = registry_of(request)
    if kind == "agent":
        return kind, registry.get_agent(org.id, name).id
    return kind, registry.get_role(org.id, name).id


async def list_keys(request: Request, kind: str) -> Response:
    """List an agent's or role's keys (revoked ones included, with ``revoked_at``)."""
    kind, owner_id = _key_owner(request, kind, "ListAPIKeys")
    amount, after = page_params(request)
    keys, more = registry_of(request).list_keys(kind, owner_id, after, amount)
    return paged([key_json(k) for k in keys], more, keys[-1].id if keys else None)


async def create_key(request: Request, kind: str) -> Response:
    """Create a key; the response is the only time the token is shown."""
    kind, owner_id = _key_owner(request, kind, "CreateAPIKey")
    body = await read_json(request, optional=True)
    name = opt_str(body, "name", "", max_len=200) or ""
    description = opt_str(body, "description", "", max_len=1000) or ""
    token = new_token(kind)
    key = registry_of(request).create_key(kind, owner_id, token, name=name, description=description)
    return JSONResponse({"token": token, **key_json(key)}, status_code=201)


async def get_key(request: Request, kind: str) -> Response:
    """Return one key (never its token)."""
    kind, owner_id = _key_owner(request, kind, "GetAPIKey")
    key = registry_of(request).get_key(kind, owner_id, request.path_params["key_id"])
    if key is None:
        raise ApiError(404, "not_found", "API key not found")
    return JSONResponse(key_json(key))


async def revoke_key(request: Request, kind: str) -> Response:
    """Revoke a key."""
    kind, owner_id = _key_owner(request, kind, "RevokeAPIKey")
    registry = registry_of(request)
    if registry.get_key(kind, owner_id, request.path_params["key_id"]) is None:
        raise ApiError(404, "not_found", "API key not found")
    registry.revoke_key(request.path_params["key_id"])
    return Response(status_code=204)


def _key_routes(kind: str) -> list[BaseRoute]:
    """Return the four key routes of ``kind`` (``"agent"`` or ``"role"``)."""

    async def list_(request: Request) -> Response:
        return await list_keys(request, kind)

    async def create(request: Request) -> Response:
        return await create_key(request, kind)

    async def get(request: Request) -> Response:
        return await get_key(request, kind)

    async def revoke(request: Request) -> Response:
        return await revoke_key(request, kind)

    base = f"{ORG}/{kind}s/{{name}}/auth/keys"
    return [
        Route(base, list_, methods=["GET"]),
        Route(base, create, methods=["POST"]),
        Route(base + "/{key_id}", get, methods=["GET"]),
        Route(base + "/{key_id}", revoke, methods=["DELETE"]),
    ]


routes: list[BaseRoute] = [
    Route(ORG + "/roles", list_roles, methods=["GET"]),
    Route(ORG + "/roles", create_role, methods=["POST"]),
    Route(ORG + "/roles/{name}", get_role, methods=["GET"]),
    Route(ORG + "/roles/{name}", delete_role, methods=["DELETE"]),
    Route(ORG + "/agents", list_agents, methods=["GET"]),
    Route(ORG + "/agents", create_agent, methods=["POST"]),
    Route(ORG + "/agents/{name}", get_agent, methods=["GET"]),
    Route(ORG + "/agents/{name}", update_agent, methods=["PUT"]),
    Route(ORG + "/agents/{name}", delete_agent, methods=["DELETE"]),
    *_key_routes("role"),
    *_key_routes("agent"),
]
