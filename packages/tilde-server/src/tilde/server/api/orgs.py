"""Organizations and members (CONTRACT #1-#7), and who the caller is (``GET /auth/me``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._validate import check_name, opt_str
from tilde.server.api.common import (
    auth_of,
    read_json,
    registry_of,
    require_principal,
    resolve_org,
)
from tilde.server.api.serialize import member_json, org_json
from tilde.server.errors import ApiError
from tilde.server.users import USERNAME_RE


async def list_orgs(request: Request) -> Response:
    """List the organizations the caller belongs to."""
    principal = require_principal(request)
    auth_of(request).authorize(principal, "ListOrganizations")
    registry = registry_of(request)
    if principal.type == "user":
        orgs = registry.list_orgs(user_id=principal.id)
    else:
        orgs = registry.list_orgs(org_id=principal.org_id or "")
    return JSONResponse({"results": [org_json(o) for o in orgs]})


async def me(request: Request) -> Response:
    """Return the caller: ``{user, principal, organizations, has_password}``.

    ``user`` is the spec's User for a human caller and null for agents and roles; ``principal`` (an addition)
    names any caller by type, id and name, so a command line can say whose key it holds.
    """
    principal = require_principal(request)
    auth_of(request).authorize(principal, "ListOrganizations")
    registry = registry_of(request)
    user = registry.get_user(principal.id) if principal.type == "user" else None
    if user is not None:
        orgs = registry.list_orgs(user_id=user.id)
    else:
        orgs = registry.list_orgs(org_id=principal.org_id or "")
    return JSONResponse(
        {
            "user": None
            if user is None
            else {
                "id": user.id,
                "username": user.username,
                "email": user.email,
                "full_name": user.full_name,
                "source": "local",
                "status": "active",
                "created_at": user.created_at,
            },
            "principal": {
                "type": principal.type,
                "id": principal.id,
                "name": principal.name,
                "organization_id": principal.org_id,
            },
            "organizations": [{"id": o.id, "name": o.name, "display_name": o.display_name} for o in orgs],
            "has_password": False,
        }
    )


async def create_org(request: Request) -> Response:
    """Create an organization; the creator becomes a member."""
    principal = require_principal(request)
    auth_of(request).authorize(principal, "CreateOrganization")
    body = await read_json(request)
    name = check_name(body.get("name"), "name")
    display_name = opt_str(body, "display_name", max_len=200) or name
    org = registry_of(request).create_org(name, display_name, principal.id)
    return JSONResponse(org_json(org), status_code=201)


async def get_org(request: Request) -> Response:
    """Return one organization."""
    return JSONResponse(org_json(resolve_org(request)))


async def delete_org(request: Request) -> Response:
    """Soft-delete an organization (and its repositories)."""
    org = resolve_org(request, "DeleteOrganization")
    registry_of(request).delete_org(org.id)
    return Response(status_code=204)


async def list_members(request: Request) -> Response:
    """List an organization's members."""
    org = resolve_org(request, "ListMembers")
    return JSONResponse({"results": [member_json(m) for m in registry_of(request).list_members(org.id)]})


async def add_member(request: Request) -> Response:
    """Add a user by user name to an organization.

    This local server creates a user the first time its name is added (``tilde-server user create NAME`` then
    gives that user its first API key); the hosted service adds only existing users.
    """
    org = resolve_org(request, "AddMember")
    body = await read_json(request)
    username = opt_str(body, "username", max_len=100)
    if not username:
        raise ApiError(400, "invalid_field", "username is required")
    if not USERNAME_RE.match(username):
        raise ApiError(400, "invalid_name", f"user names must match {USERNAME_RE.pattern}")
    registry = registry_of(request)
    user = registry.ensure_user(username)
    registry.add_member(org.id, user.id)
    member = next(m for m in registry.list_members(org.id) if m.user_id == user.id)
    return JSONResponse(member_json(member), status_code=201)


async def remove_member(request: Request) -> Response:
    """Remove a user from an organization."""
    org = resolve_org(request, "RemoveMember")
    if not registry_of(request).remove_member(org.id, request.path_params["user_id"]):
        raise ApiError(404, "not_found", "no such member")
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/auth/me", me, methods=["GET"]),
    Route("/organizations", list_orgs, methods=["GET"]),
    Route("/organizations", create_org, methods=["POST"]),
    Route("/organizations/{org}", get_org, methods=["GET"]),
    Route("/organizations/{org}", delete_org, methods=["DELETE"]),
    Route("/organizations/{org}/members", list_members, methods=["GET"]),
    Route("/organizations/{org}/members", add_member, methods=["POST"]),
    Route("/organizations/{org}/members/{user_id}", remove_member, methods=["DELETE"]),
]
