"""The server's own OpenAPI 3.0 document, built from the routes it mounts (``GET /openapi.json``).

Every path and method comes from the application's route table, so the document cannot list a route the
server does not have or miss one it has. What a route table does not say is written here, per operation:
the success statuses, the response entity (the shapes `tilde.server.api.serialize` builds), the request body
and the query parameters. Every operation also lists the error statuses the server answers with, each with
the ``{message, code, request_id}`` body. The conformance tests (``tests/conformance``) run generated
requests against a live server with this document and hold it to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from tilde.server._version import __version__

__all__ = ["API_PREFIX", "build_document", "openapi_endpoint", "operations", "server_document"]

#: Where the API is mounted.
API_PREFIX = "/api/v1"

_O = "/organizations/{org}"
_R = _O + "/repositories/{repo}"
_S = _R + "/sessions/{session_id}"
_SB = _R + "/sandboxes/{sandbox_id}"
_T = _R + "/sandbox-triggers/{trigger_id}"

_STRING: dict[str, Any] = {"type": "string"}
_NULLABLE_STRING: dict[str, Any] = {"type": "string", "nullable": True}
_INT: dict[str, Any] = {"type": "integer"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_ANY_OBJECT: dict[str, Any] = {"type": "object"}
_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: Iterable[str] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _page_of(name: str) -> dict[str, Any]:
    return _obj(
        ["results", "pagination"],
        results={"type": "array", "items": _ref(name)},
        pagination=_ref("Pagination"),
    )


_CREATED_BY = {"type": "string", "enum": ["user", "role", "agent"]}

#: The entities of the contract as this server sends them (``nullable`` where it sends ``null``).
SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj(["message", "code", "request_id"], message=_STRING, code=_STRING, request_id=_STRING),
    "Pagination": _obj(
        ["has_more", "next_offset", "max_per_page"], has_more=_BOOL, next_offset=_STRING, max_per_page=_INT
    ),
    "Organization": _obj(
        ["id", "name", "created_at"],
        id=_STRING,
        name=_STRING,
        display_name=_STRING,
        created_at=_STRING,
        status=_STRING,
        notes=_STRING,
    ),
    "Membership": _obj(
        ["organization_id", "user_id", "username"],
        organization_id=_STRING,
        user_id=_STRING,
        username=_STRING,
        full_name=_STRING,
        email=_STRING,
        joined_at=_STRING,
    ),
    "Repository": _obj(
        ["id", "organization_id", "name"],
        id=_STRING,
        organization_id=_STRING,
        name=_STRING,
        description=_STRING,
        visibility=_STRING,
        retention_days=_INT,
        session_max_duration_days={"type": "integer", "nullable": True},
        agent_commits_require_approval=_BOOL,
        created_by_type=_CREATED_BY,
        created_by=_STRING,
        created_at=_STRING,
    ),
    "Role": _obj(
        ["id", "organization_id", "name"],
        id=_STRING,
        organization_id=_STRING,
        name=_STRING,
        description=_STRING,
        created_by_type=_CREATED_BY,
        created_by=_STRING,
        created_by_name=_STRING,
        created_at=_STRING,
        last_used_at=_NULLABLE_STRING,
    ),
    "Agent": _obj(
        ["id", "organization_id", "name"],
        id=_STRING,
        organization_id=_STRING,
        name=_STRING,
        description=_STRING,
        metadata=_STRING_MAP,
        inline_policy=_STRING,
        inline_policy_updated_at=_NULLABLE_STRING,
        created_by_type=_CREATED_BY,
        created_by=_STRING,
        created_by_name=_STRING,
        created_at=_STRING,
        last_used_at=_NULLABLE_STRING,
    ),
    "APIToken": _obj(
        ["id", "name"],
        id=_STRING,
        user_id=_STRING,
        name=_STRING,
        description=_STRING,
        token_hint=_STRING,
        created_at=_STRING,
        last_used_at=_NULLABLE_STRING,
        revoked_at=_NULLABLE_STRING,
    ),
    "CommitLog": _obj(
        ["id", "committer", "message", "creation_date", "parents", "metadata"],
        id=_STRING,
        committer=_STRING,
        committer_type=_CREATED_BY,
        committer_id=_STRING,
        message=_STRING,
        creation_date=_STRING,
        parents={"type": "array", "items": _STRING},
        metadata=_STRING_MAP,
        is_stale=_BOOL,
        meta_range_id=_STRING,
        object_count=_INT,
        total_size=_INT,
    ),
    "Entry": _obj(
        ["last_modified", "size", "e_tag"],
        last_modified=_STRING,
        size=_INT,
        e_tag=_STRING,
        metadata=_STRING_MAP,
        content_type=_STRING,
        source_metadata=_ANY_OBJECT,
    ),
    "ListingEntry": _obj(["path", "type"], path=_STRING, type=_STRING, entry=_ref("Entry"), status=_STRING),
    "EntryRecord": _obj(["path"], path=_STRING, entry=_ref("Entry"), deleted=_BOOL),
}
for _name in (
    "Repository",
    "Role",
    "Agent",
    "APIToken",
    "CommitLog",
    "ListingEntry",
    "EntryRecord",
):
    SCHEMAS[_name + "Page"] = _page_of(_name)
for _name in ("Organization", "Membership"):
    SCHEMAS[_name + "List"] = _obj(["results"], results={"type": "array", "items": _ref(_name)})

#: Success statuses and their response entity per operation; unlisted GET/POST/PUT/PATCH answer 200 and
#: DELETE 204, without a documented entity.
_SUCCESS: dict[tuple[str, str], dict[str, str | None]] = {
    ("GET", "/organizations"): {"200": "OrganizationList"},
    ("POST", "/organizations"): {"201": "Organization"},
    ("GET", _O): {"200": "Organization"},
    ("GET", _O + "/members"): {"200": "MembershipList"},
    ("POST", _O + "/members"): {"201": "Membership"},
    ("GET", _O + "/repositories"): {"200": "RepositoryPage"},
    ("POST", _O + "/repositories"): {"201": "Repository"},
    ("GET", _R): {"200": "Repository"},
    ("PUT", _R): {"200": "Repository"},
    ("POST", _R + "/sessions"): {"201": None},
    ("POST", _S): {"200": None, "202": None},
    ("GET", _S + "/approve"): {"200": "EntryRecordPage"},
    ("GET", _R + "/object"): {"200": None, "206": None, "307": None},
    ("GET", _R + "/objects"): {"200": "ListingEntryPage"},
    ("GET", _R + "/changes"): {"200": "EntryRecordPage"},
    ("POST", _R + "/object/copy"): {"201": None},
    ("POST", _R + "/object/finalize"): {"201": None},
    ("POST", _R + "/object/multipart/complete"): {"201": None},
    ("POST", _R + "/objects:batch"): {"201": None},
    ("GET", _R + "/log"): {"200": "CommitLogPage"},
    ("GET", _R + "/commits/{commit_id}"): {"200": "CommitLog"},
    ("POST", _R + "/commits/{commit_id}/revert"): {"201": None},
    ("GET", _R + "/diff"): {"200": "ListingEntryPage"},
    ("GET", _O + "/roles"): {"200": "RolePage"},
    ("POST", _O + "/roles"): {"201": "Role"},
    ("GET", _O + "/roles/{name}"): {"200": "Role"},
    ("GET", _O + "/agents"): {"200": "AgentPage"},
    ("POST", _O + "/agents"): {"201": "Agent"},
    ("GET", _O + "/agents/{name}"): {"200": "Agent"},
    ("PUT", _O + "/agents/{name}"): {"200": "Agent"},
    ("GET", _O + "/roles/{name}/auth/keys"): {"200": "APITokenPage"},
    ("POST", _O + "/roles/{name}/auth/keys"): {"201": None},
    ("GET", _O + "/roles/{name}/auth/keys/{key_id}"): {"200": "APIToken"},
    ("GET", _O + "/agents/{name}/auth/keys"): {"200": "APITokenPage"},
    ("POST", _O + "/agents/{name}/auth/keys"): {"201": None},
    ("GET", _O + "/agents/{name}/auth/keys/{key_id}"): {"200": "APIToken"},
    ("POST", _O + "/groups"): {"201": None},
    ("POST", _O + "/groups/{group_id}/members"): {"201": None},
    ("POST", _O + "/policies"): {"201": None},
    ("POST", _O + "/policies/{policy_id}/attachments"): {"201": None},
    ("POST", _O + "/connectors"): {"201": None},
    ("POST", _R + "/connectors"): {"201": None},
    ("POST", _R + "/import"): {"202": None},
    ("POST", _R + "/sandboxes"): {"201": None},
    ("DELETE", _SB): {"202": None},
    ("POST", _SB + "/finish"): {"202": None},
    ("POST", _R + "/sandbox-triggers"): {"201": None},
}

_NAME_BODY = _obj(["name"], name=_STRING, description=_STRING)
#: Request bodies (JSON) per operation; other POST/PUT/PATCH operations take any JSON object.
_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/organizations"): _obj(["name"], name=_STRING, display_name=_STRING),
    ("POST", _O + "/members"): _obj(["username"], username=_STRING),
    ("POST", _O + "/repositories"): _obj(
        ["name"],
        name=_STRING,
        description=_STRING,
        visibility=_STRING,
        retention_days=_INT,
        session_max_duration_days=_INT,
        agent_commits_require_approval=_BOOL,
    ),
    ("PUT", _R): _obj(
        description=_STRING,
        visibility=_STRING,
        retention_days=_INT,
        session_max_duration_days=_INT,
        agent_commits_require_approval=_BOOL,
    ),
    ("POST", _S): _obj(["message"], message=_STRING, metadata=_STRING_MAP),
    ("POST", _S + "/approve"): _obj(["message"], message=_STRING, metadata=_STRING_MAP),
    ("POST", _O + "/roles"): _NAME_BODY,
    ("POST", _O + "/agents"): _obj(["name"], name=_STRING, description=_STRING, metadata=_STRING_MAP),
    ("PUT", _O + "/agents/{name}"): _obj(description=_STRING, metadata=_STRING_MAP, inline_policy=_STRING),
    ("POST", _O + "/roles/{name}/auth/keys"): _NAME_BODY,
    ("POST", _O + "/agents/{name}/auth/keys"): _NAME_BODY,
    ("PUT", _R + "/secrets/{key}"): _obj(["value"], value=_STRING),
    ("PUT", _O + "/agents/{name}/secrets/{key}"): _obj(["value"], value=_STRING),
}
#: Operations whose body is optional (an empty body is ``{}``).
_OPTIONAL_BODY = {("PUT", _R), ("POST", _S), ("PUT", _O + "/agents/{name}")}
#: Operations that take no body at all, or one that is not JSON.
_NO_JSON_BODY = {
    ("POST", _R + "/sessions"),
    ("POST", _R + "/object/copy"),
    ("POST", _R + "/objects:batch"),
    ("PUT", _R + "/object"),
    ("POST", _R + "/commits/{commit_id}/revert"),
    ("POST", _SB + "/finish"),
}

_PAGED = {"amount": {"type": "integer", "minimum": 1, "maximum": 1000}, "after": _STRING}
#: Query parameters per operation (``True`` marks a required one).
_QUERY: dict[tuple[str, str], dict[str, tuple[dict[str, Any], bool]]] = {
    ("GET", _R + "/object"): {
        "path": (_STRING, True),
        "session_id": (_STRING, False),
        "ref": (_STRING, False),
    },
    ("DELETE", _R + "/object"): {"path": (_STRING, True), "session_id": (_STRING, True)},
    ("PUT", _R + "/object"): {"path": (_STRING, True), "session_id": (_STRING, True)},
    ("GET", _R + "/objects"): {
        "prefix": (_STRING, False),
        "delimiter": (_STRING, False),
        "session_id": (_STRING, False),
        "ref": (_STRING, False),
    },
    ("GET", _R + "/changes"): {"session_id": (_STRING, True), "prefix": (_STRING, False)},
    ("POST", _R + "/object/copy"): {
        "session_id": (_STRING, True),
        "source_path": (_STRING, True),
        "destination_path": (_STRING, True),
    },
    ("POST", _R + "/objects/delete"): {"session_id": (_STRING, True)},
    ("POST", _R + "/object/finalize"): {"session_id": (_STRING, True), "path": (_STRING, True)},
    ("GET", _R + "/diff"): {"left_ref": (_STRING, False), "right_ref": (_STRING, False)},
}
#: Operations whose listing takes ``amount`` and ``after``.
_PAGED_OPS = {
    op for op, success in _SUCCESS.items() if any((s or "").endswith("Page") for s in success.values())
}

#: Error statuses every operation may answer (with the Error body), and the extra ones of some.
_ERRORS = ("400", "401", "403", "404", "409", "413")
_EXTRA_ERRORS: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", _R + "/object"): ("416",),
    ("POST", _R + "/sandboxes"): ("429", "503"),
    ("GET", _SB + "/logs/stdout"): ("410",),
    ("GET", _SB + "/logs/network"): ("410",),
    ("POST", _R + "/import"): ("502",),
}

_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def _walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _walk(route.routes, prefix + route.path)
        elif isinstance(route, Route) and route.methods:
            for method in sorted(route.methods - {"HEAD"} if "GET" in route.methods else route.methods):
                yield method, prefix + route.path


def operations(routes: Iterable[BaseRoute], api_prefix: str) -> list[tuple[str, str]]:
    """Return ``(method, path)`` of every HTTP operation under ``api_prefix``, relative to it.

    ``HEAD`` is folded into ``GET``; websocket routes are left out, and so are the presigned upload targets
    outside the prefix (their signature, not a bearer token, authorizes them).
    """
    return [
        (method, path[len(api_prefix) :])
        for method, path in _walk(routes)
        if path.startswith(api_prefix + "/")
    ]


def _operation(method: str, path: str) -> dict[str, Any]:
    key = (method, path)
    default = "204" if method == "DELETE" else "200"
    responses: dict[str, Any] = {}
    for status, schema in _SUCCESS.get(key, {default: None}).items():
        response: dict[str, Any] = {"description": "success"}
        if schema is not None:
            response["content"] = {"application/json": {"schema": _ref(schema)}}
        responses[status] = response
    error = {"description": "error", "content": {"application/json": {"schema": _ref("Error")}}}
    for status in (*_ERRORS, *_EXTRA_ERRORS.get(key, ())):
        responses[status] = error
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _STRING} for name in _PARAM.findall(path)
    ]
    query = dict(_QUERY.get(key, {}))
    if key in _PAGED_OPS:
        query.update({name: (schema, False) for name, schema in _PAGED.items()})
    parameters += [
        {"name": name, "in": "query", "required": required, "schema": schema}
        for name, (schema, required) in query.items()
    ]
    plain = _PARAM.sub(lambda match: match.group(1), path)
    operation: dict[str, Any] = {
        "operationId": method.lower() + re.sub(r"[^A-Za-z0-9]+", "_", plain).rstrip("_"),
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if method in ("POST", "PUT", "PATCH") and key not in _NO_JSON_BODY:
        operation["requestBody"] = {
            "required": key not in _OPTIONAL_BODY,
            "content": {"application/json": {"schema": _BODIES.get(key, _ANY_OBJECT)}},
        }
    return operation


def build_document(routes: Iterable[BaseRoute], api_prefix: str) -> dict[str, Any]:
    """Return the OpenAPI 3.0 document of ``routes`` (the application's route table).

    Args:
        routes: The mounted routes (``app.routes``).
        api_prefix: Where the API is mounted (``/api/v1``); the document's server URL.

    """
    paths: dict[str, dict[str, Any]] = {}
    for method, path in operations(routes, api_prefix):
        paths.setdefault(path, {})[method.lower()] = _operation(method, path)
    return {
        "openapi": "3.0.3",
        "info": {"title": "tilde-server", "version": __version__},
        "servers": [{"url": api_prefix}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


async def openapi_endpoint(request: Request) -> Response:
    """Serve the document of the application's own routes (no authentication: it holds no data)."""
    state = request.app.state
    document = getattr(state, "openapi_document", None)
    if document is None:
        document = build_document(request.app.routes, API_PREFIX)
        state.openapi_document = document
    return JSONResponse(document)


def server_document() -> dict[str, Any]:
    """Return the document every server serves, built from the route modules without starting one."""
    from tilde.server.app import API_PREFIX as MOUNTED_AT
    from tilde.server.app import _api_routes

    relative, absolute = _api_routes()
    return build_document([*absolute, Mount(MOUNTED_AT, routes=relative)], MOUNTED_AT)
