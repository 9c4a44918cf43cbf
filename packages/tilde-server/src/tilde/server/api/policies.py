"""Policies, their attachments and effective policies (CONTRACT #74-#84).

Policy texts are validated on the way in (400 naming the first error's line and column); the built-in
policies every organization has cannot be changed or deleted (400). ``policies:validate`` and
``policies:generate`` are literal paths (a ``:`` in the last segment). The generator's plugin manager is made
once per application, on first use, and kept on ``app.state.policy_plugin_manager``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Any

import pluggy
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._validate import display_name, opt_str, principal_ref
from tilde.server.api.common import (
    auth_of,
    page_params,
    paged,
    query,
    read_json,
    registry_of,
    require_principal,
    resolve_org,
    run_sync,
)
from tilde.server.errors import ApiError
from tilde.server.iam.generate import MAX_PROMPT_CHARS, PolicyGenerationError, generate_policy
from tilde.server.iam.plugins import PluginLoadError, make_server_plugin_manager
from tilde.server.iam.policy import MAX_POLICY_CHARS, validate_policy
from tilde.server.iam.store import PRINCIPAL_TYPES

__all__ = ["check_policy_text", "routes"]

ORG = "/organizations/{org}"
logger = logging.getLogger("tilde.server")
_manager_lock = threading.Lock()


def check_policy_text(text: Any, field: str = "policy_text") -> str:
    """Return ``text`` when it is a valid policy (400 naming the first error's line and column otherwise).

    Args:
        text: The submitted value.
        field: The field's name, for the message.

    """
    if not isinstance(text, str):
        raise ApiError(400, "invalid_field", f"{field} must be a string")
    if len(text) > MAX_POLICY_CHARS:
        raise ApiError(400, "invalid_policy", f"{field} is longer than {MAX_POLICY_CHARS} characters")
    errors = validate_policy(text)
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ApiError(
            400, "invalid_policy", f"{field}: line {first.line}, column {first.column}: {first.message}{more}"
        )
    return text


def plugin_manager_of(conn: HTTPConnection) -> pluggy.PluginManager:
    """Return the application's server plugin manager, made on first use."""
    state = conn.app.state
    with _manager_lock:
        manager = getattr(state, "policy_plugin_manager", None)
        if manager is None:
            try:
                manager = make_server_plugin_manager()
            except PluginLoadError as exc:
                # A deployment's generator plugin that cannot load is the server's fault, not the caller's.
                logger.error("policy generator plugins failed to load: %s", exc)
                raise ApiError(502, "generator_unavailable", "the policy generator is unavailable") from None
            state.policy_plugin_manager = manager
    assert isinstance(manager, pluggy.PluginManager)
    return manager


async def list_policies(request: Request) -> Response:
    """List policy summaries by name (paginated, with ``attachment_count``)."""
    org = resolve_org(request, "ListPolicies")
    amount, after = page_params(request)
    items, more = registry_of(request).list_policies(org.id, after, amount)
    return paged([asdict(p) for p in items], more, items[-1].name if items else None)


async def create_policy(request: Request) -> Response:
    """Create a policy from validated text."""
    org = resolve_org(request, "CreatePolicy")
    principal = require_principal(request)
    body = await read_json(request)
    name = display_name(body.get("name"))
    text = check_policy_text(body.get("policy_text"))
    description = opt_str(body, "description", "") or ""
    policy = registry_of(request).create_policy(
        org.id, name, description, text, (principal.type, principal.id)
    )
    return JSONResponse(asdict(policy), status_code=201)


async def validate(request: Request) -> Response:
    """Check a policy text: ``{valid, errors: [{line, column, message}]}``."""
    resolve_org(request, "ListPolicies")
    body = await read_json(request)
    text = body.get("policy_text")
    if not isinstance(text, str):
        raise ApiError(400, "invalid_field", "policy_text must be a string")
    errors = validate_policy(text)
    return JSONResponse(
        {
            "valid": not errors,
            "errors": [{"line": e.line, "column": e.column, "message": e.message} for e in errors],
        }
    )


async def generate(request: Request) -> Response:
    """Turn a sentence into policy text through the server's generator hook: ``{policy_text}``."""
    resolve_org(request, "ListPolicies")
    body = await read_json(request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise ApiError(400, "invalid_field", "prompt must be a string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(400, "invalid_field", f"prompt is longer than {MAX_PROMPT_CHARS} characters")
    manager = plugin_manager_of(request)
    try:
        text = await run_sync(generate_policy, prompt, manager)
    except PolicyGenerationError as exc:
        raise ApiError(exc.status, "generation_failed", exc.message) from None
    return JSONResponse({"policy_text": text})


async def get_policy(request: Request) -> Response:
    """Return ``{policy, attachments}``."""
    org = resolve_org(request, "GetPolicy")
    registry = registry_of(request)
    policy = registry.get_policy(org.id, request.path_params["policy_id"])
    attachments = registry.list_attachments(org.id, policy_id=policy.id)
    return JSONResponse({"policy": asdict(policy), "attachments": [asdict(a) for a in attachments]})


async def update_policy(request: Request) -> Response:
    """Change a policy's name, description or text (built-ins: 400)."""
    org = resolve_org(request, "UpdatePolicy")
    body = await read_json(request, optional=True)
    changes: dict[str, str] = {}
    if body.get("name") is not None:
        changes["name"] = display_name(body["name"])
    if body.get("description") is not None:
        changes["description"] = opt_str(body, "description") or ""
    if body.get("policy_text") is not None:
        changes["policy_text"] = check_policy_text(body["policy_text"])
    policy = registry_of(request).update_policy(org.id, request.path_params["policy_id"], changes)
    return JSONResponse(asdict(policy))


async def delete_policy(request: Request) -> Response:
    """Delete a policy and its attachments (built-ins: 400)."""
    org = resolve_org(request, "DeletePolicy")
    registry_of(request).delete_policy(org.id, request.path_params["policy_id"])
    return Response(status_code=204)


async def attach(request: Request) -> Response:
    """Attach a policy to a user, group, role or agent (404 when either is unknown here)."""
    org = resolve_org(request, "AttachPolicy")
    principal = require_principal(request)
    body = await read_json(request)
    kind, principal_id = principal_ref(body, "principal", PRINCIPAL_TYPES)
    registry = registry_of(request)
    policy_id = request.path_params["policy_id"]
    registry.attach_policy(org.id, policy_id, kind, principal_id, (principal.type, principal.id))
    found = registry.list_attachments(org.id, policy_id=policy_id, principal=(kind, principal_id))
    return JSONResponse(asdict(found[0]) if found else {}, status_code=201)


async def detach(request: Request) -> Response:
    """Detach a policy (``?principal_type&principal_id``)."""
    org = resolve_org(request, "DetachPolicy")
    kind, principal_id = principal_ref(request.query_params, "principal", PRINCIPAL_TYPES)
    registry_of(request).detach_policy(org.id, request.path_params["policy_id"], kind, principal_id)
    return Response(status_code=204)


async def list_attachments(request: Request) -> Response:
    """Every attachment in the organization."""
    org = resolve_org(request, "ListPolicies")
    return JSONResponse({"results": [asdict(a) for a in registry_of(request).list_attachments(org.id)]})


async def effective_policies(request: Request) -> Response:
    """List the policies in force for ``?user_id`` or ``?principal_type&principal_id`` (or the caller)."""
    org = resolve_org(request, "ListPolicies")
    user_id = query(request, "user_id")
    if user_id:
        kind, principal_id = "user", user_id
    elif query(request, "principal_type") or query(request, "principal_id"):
        kind, principal_id = principal_ref(request.query_params, "principal", PRINCIPAL_TYPES)
    else:
        caller = require_principal(request)
        kind, principal_id = caller.type, caller.id
    registry_of(request).require_principal_name(org.id, kind, principal_id)
    entries = auth_of(request).authorizer.effective_policies(org.id, kind, principal_id)
    return JSONResponse({"results": [asdict(e) for e in entries]})


routes: list[BaseRoute] = [
    Route(ORG + "/policies", list_policies, methods=["GET"]),
    Route(ORG + "/policies", create_policy, methods=["POST"]),
    Route(ORG + "/policies:validate", validate, methods=["POST"]),
    Route(ORG + "/policies:generate", generate, methods=["POST"]),
    Route(ORG + "/policies/{policy_id}", get_policy, methods=["GET"]),
    Route(ORG + "/policies/{policy_id}", update_policy, methods=["PUT"]),
    Route(ORG + "/policies/{policy_id}", delete_policy, methods=["DELETE"]),
    Route(ORG + "/policies/{policy_id}/attachments", attach, methods=["POST"]),
    Route(ORG + "/policies/{policy_id}/attachments", detach, methods=["DELETE"]),
    Route(ORG + "/attachments", list_attachments, methods=["GET"]),
    Route(ORG + "/effective-policies", effective_policies, methods=["GET"]),
]
