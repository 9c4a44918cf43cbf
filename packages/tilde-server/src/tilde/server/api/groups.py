"""Groups, their members and effective groups (CONTRACT #66-#73).

Members are users, groups, roles and agents of the same organization; a group may not contain itself, even
through other groups (400). Policies attached to a group apply to its members, and to the members of the
groups nested in it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._validate import display_name, opt_str, principal_ref
from tilde.server.api.common import (
    auth_of,
    page_params,
    paged,
    read_json,
    registry_of,
    require_principal,
    resolve_org,
)
from tilde.server.iam.store import PRINCIPAL_TYPES

__all__ = ["routes"]

ORG = "/organizations/{org}"
GROUP = ORG + "/groups/{group_id}"


def _group_details(conn: HTTPConnection, org_id: str, group_id: str) -> dict[str, Any]:
    registry = registry_of(conn)
    group = registry.get_group(org_id, group_id)
    return {
        "group": asdict(group),
        "members": [asdict(m) for m in registry.list_group_members(org_id, group_id)],
        "attachments": [asdict(a) for a in registry.list_attachments(org_id, principal=("group", group_id))],
    }


async def list_groups(request: Request) -> Response:
    """List the organization's groups by name (paginated)."""
    org = resolve_org(request, "ListGroups")
    amount, after = page_params(request)
    groups, more = registry_of(request).list_groups(org.id, after, amount)
    return paged([asdict(g) for g in groups], more, groups[-1].name if groups else None)


async def create_group(request: Request) -> Response:
    """Create a group: ``201`` Group."""
    org = resolve_org(request, "CreateGroup")
    principal = require_principal(request)
    body = await read_json(request)
    name = display_name(body.get("name"))
    description = opt_str(body, "description", "") or ""
    group = registry_of(request).create_group(org.id, name, description, (principal.type, principal.id))
    return JSONResponse(asdict(group), status_code=201)


async def get_group(request: Request) -> Response:
    """Return ``{group, members, attachments}``."""
    org = resolve_org(request, "GetGroup")
    return JSONResponse(_group_details(request, org.id, request.path_params["group_id"]))


async def update_group(request: Request) -> Response:
    """Rename or re-describe a group: the Group."""
    org = resolve_org(request, "UpdateGroup")
    body = await read_json(request, optional=True)
    name = display_name(body["name"]) if body.get("name") is not None else None
    description = opt_str(body, "description")
    group = registry_of(request).update_group(org.id, request.path_params["group_id"], name, description)
    return JSONResponse(asdict(group))


async def delete_group(request: Request) -> Response:
    """Delete a group with its memberships and attachments."""
    org = resolve_org(request, "DeleteGroup")
    registry_of(request).delete_group(org.id, request.path_params["group_id"])
    return Response(status_code=204)


async def add_member(request: Request) -> Response:
    """Add ``{subject_type, subject_id}`` to the group: ``201`` GroupMember."""
    org = resolve_org(request, "AddGroupMember")
    body = await read_json(request)
    kind, subject_id = principal_ref(body, "subject", PRINCIPAL_TYPES)
    registry = registry_of(request)
    group_id = request.path_params["group_id"]
    registry.add_group_member(org.id, group_id, kind, subject_id)
    member = next(
        m
        for m in registry.list_group_members(org.id, group_id)
        if (m.subject_type, m.subject_id) == (kind, subject_id)
    )
    return JSONResponse(asdict(member), status_code=201)


async def remove_member(request: Request) -> Response:
    """Remove ``?subject_type&subject_id`` from the group."""
    org = resolve_org(request, "RemoveGroupMember")
    kind, subject_id = principal_ref(request.query_params, "subject", PRINCIPAL_TYPES)
    registry_of(request).remove_group_member(org.id, request.path_params["group_id"], kind, subject_id)
    return Response(status_code=204)


async def effective_groups(request: Request) -> Response:
    """List the groups ``?principal_type&principal_id`` (default: the caller) belongs to, with sources."""
    org = resolve_org(request, "ListGroups")
    if request.query_params.get("principal_type") or request.query_params.get("principal_id"):
        kind, principal_id = principal_ref(request.query_params, "principal", PRINCIPAL_TYPES)
    else:
        caller = require_principal(request)
        kind, principal_id = caller.type, caller.id
    registry_of(request).require_principal_name(org.id, kind, principal_id)
    groups = auth_of(request).authorizer.effective_groups(org.id, kind, principal_id)
    return JSONResponse({"results": [asdict(g) for g in groups]})


routes: list[BaseRoute] = [
    Route(ORG + "/groups", list_groups, methods=["GET"]),
    Route(ORG + "/groups", create_group, methods=["POST"]),
    Route(GROUP, get_group, methods=["GET"]),
    Route(GROUP, update_group, methods=["PUT"]),
    Route(GROUP, delete_group, methods=["DELETE"]),
    Route(GROUP + "/members", add_member, methods=["POST"]),
    Route(GROUP + "/members", remove_member, methods=["DELETE"]),
    Route(ORG + "/effective-groups", effective_groups, methods=["GET"]),
]
