"""Sandbox trigger routes (CONTRACT #42 to #48): CRUD, enable/disable and the run history.

``PUT`` merges a partial body into the stored trigger (the published client sends only the fields that
change, CONTRACT §9 row 7); fields it leaves out keep their values, and ``"run_as": null`` clears run_as.
The triggers themselves live in `tilde.server.sandbox.triggers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api.common import (
    auth_of,
    checked_path,
    page_params,
    paged,
    read_json,
    registry_of,
    require_principal,
    resolve_repo,
    run_sync,
)
from tilde.server.errors import ApiError
from tilde.server.registry import RepoRecord
from tilde.server.sandbox.runtime import org_principal
from tilde.server.sandbox.spec import parse_spec
from tilde.server.sandbox.triggers import TriggerRecord, TriggerRunRecord, TriggerStore

MAX_NAME_LENGTH = 100
MAX_CONDITIONS = 10
CONDITION_TYPES = ("prefix", "path_exact")
DIFF_TYPES = ("any", "added", "removed", "changed")
_CONFIG_KEYS = ("image", "command", "mountpoint", "path_prefix", "timeout_seconds", "env_vars")


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_trigger", message)


def _store(conn: HTTPConnection) -> TriggerStore:
    store: TriggerStore = conn.app.state.trigger_store
    return store


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad("name is required")
    if len(value) > MAX_NAME_LENGTH:
        raise _bad(f"name must be at most {MAX_NAME_LENGTH} characters")
    return value


def _description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad("description must be a string")
    return value


def _condition(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _bad("each condition must be an object")
    kind = value.get("type")
    if kind not in CONDITION_TYPES:
        raise _bad(f"condition type must be one of {', '.join(CONDITION_TYPES)}")
    diff_type = value.get("diff_type") or "any"
    if diff_type not in DIFF_TYPES:
        raise _bad(f"diff_type must be one of {', '.join(DIFF_TYPES)}")
    if kind == "prefix":
        prefix = value.get("prefix")
        if not isinstance(prefix, str):
            raise _bad("a prefix condition needs a 'prefix' string")
        if prefix.startswith("/") or "\0" in prefix:
            raise _bad(f"invalid prefix: {prefix!r}")
        return {"type": kind, "prefix": prefix, "diff_type": diff_type}
    path = value.get("path")
    if not isinstance(path, str) or not path:
        raise _bad("a path_exact condition needs a 'path'")
    return {"type": kind, "path": checked_path(path), "diff_type": diff_type}


def _conditions(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CONDITIONS:
        raise _bad(f"conditions must be a list of 1 to {MAX_CONDITIONS} conditions")
    return [_condition(item) for item in value]


def _sandbox_config(value: Any, repo: RepoRecord) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad("sandbox_config must be an object")
    config = {key: value[key] for key in _CONFIG_KEYS if value.get(key) is not None}
    # The runtime's own validation, so a trigger that could never start is refused now rather than failing
    # on every commit. The command is optional in the contract; validate the rest with a stand-in.
    max_days = repo.session_max_duration_days
    spec = parse_spec(
        {**config, "command": config.get("command") or ["true"]},
        default_timeout=3600,
        max_timeout=max_days * 86400 if max_days else None,
    )
    if "command" in config:
        config["command"] = spec.command
    return config


def _run_as(conn: HTTPConnection, value: Any, repo: RepoRecord) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or value.get("type") not in ("agent", "role") or not value.get("id"):
        raise _bad('run_as must be {"type": "agent"|"role", "id": "<id>"}')
    run_as = {"type": str(value["type"]), "id": str(value["id"])}
    registry = registry_of(conn)
    found = org_principal(registry, run_as, repo.organization_id)
    if found is None:
        raise _bad(f"no {run_as['type']} with id {run_as['id']!r} in this organization")
    # Whoever sets run_as must be allowed to act as that agent or role (RunAs), or a trigger would let
    # anyone borrow another principal's rights.
    org = registry.get_org_by_id(repo.organization_id)
    auth_of(conn).authorize(require_principal(conn), "RunAs", org, None, **{found.type: found.name})
    return run_as


def _enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad("enabled must be a boolean")
    return value


def _validate(
    conn: HTTPConnection, body: Mapping[str, Any], repo: RepoRecord, *, partial: bool
) -> dict[str, Any]:
    """Validate the fields present in ``body`` (all required ones unless ``partial``)."""
    if not partial:
        for key in ("name", "conditions", "sandbox_config"):
            if key not in body:
                raise _bad(f"{key} is required")
    fields: dict[str, Any] = {}
    if "name" in body:
        fields["name"] = _name(body["name"])
    if "description" in body:
        fields["description"] = _description(body["description"])
    if "conditions" in body:
        fields["conditions"] = _conditions(body["conditions"])
    if "sandbox_config" in body:
        fields["sandbox_config"] = _sandbox_config(body["sandbox_config"], repo)
    if "run_as" in body:
        fields["run_as"] = _run_as(conn, body["run_as"], repo)
    if "enabled" in body and body["enabled"] is not None:
        fields["enabled"] = _enabled(body["enabled"])
    return fields


def trigger_json(trigger: TriggerRecord) -> dict[str, Any]:
    """Return the contract's SandboxTrigger object."""
    return {
        "id": trigger.id,
        "repository_id": trigger.repo_id,
        "name": trigger.name,
        "description": trigger.description,
        "enabled": trigger.enabled,
        "conditions": trigger.conditions,
        "sandbox_config": trigger.sandbox_config,
        "run_as": trigger.run_as,
        "created_by": trigger.created_by,
        "created_by_type": trigger.created_by_type,
        "created_at": trigger.created_at,
        "updated_at": trigger.updated_at,
    }


def run_json(run: TriggerRunRecord) -> dict[str, Any]:
    """Return the contract's SandboxTriggerRun object (plus ``error_message`` for failed runs)."""
    return {
        "id": run.id,
        "repository_id": run.repo_id,
        "trigger_id": run.trigger_id,
        "commit_id": run.commit_id,
        "status": run.status,
        "reason": run.reason,
        "error_message": run.error_message,
        "sandbox_id": run.sandbox_id,
        "matched_paths": run.matched_paths,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
    }


async def list_triggers(request: Request) -> Response:
    """``GET R/sandbox-triggers``: the repository's triggers, oldest first."""
    _, repo = resolve_repo(request, "ListSandboxTriggers")
    amount, after = page_params(request)
    triggers, has_more = await run_sync(_store(request).list_triggers, repo.id, after, amount)
    return paged([trigger_json(t) for t in triggers], has_more, str(triggers[-1].seq) if triggers else None)


async def create_trigger(request: Request) -> Response:
    """``POST R/sandbox-triggers``: create a trigger (enabled unless the body says otherwise)."""
    _, repo = resolve_repo(request, "CreateSandboxTrigger")
    body = await read_json(request)
    fields = _validate(request, body, repo, partial=False)
    trigger = await run_sync(_store(request).create, repo.id, fields, require_principal(request))
    return JSONResponse(trigger_json(trigger), status_code=201)


async def get_trigger(request: Request) -> Response:
    """``GET T``: one trigger."""
    _, repo = resolve_repo(request, "GetSandboxTrigger")
    trigger = await run_sync(_store(request).get, repo.id, request.path_params["trigger_id"])
    return JSONResponse(trigger_json(trigger))


async def update_trigger(request: Request) -> Response:
    """``PUT T``: merge the given fields into the trigger."""
    _, repo = resolve_repo(request, "UpdateSandboxTrigger")
    body = await read_json(request)
    fields = _validate(request, body, repo, partial=True)
    fields.pop("enabled", None)  # enabling is PATCH's job; PUT leaves it as it is
    trigger = await run_sync(_store(request).update, repo.id, request.path_params["trigger_id"], fields)
    return JSONResponse(trigger_json(trigger))


async def patch_trigger(request: Request) -> Response:
    """``PATCH T``: enable or disable the trigger (``{"enabled": bool}``)."""
    _, repo = resolve_repo(request, "UpdateSandboxTrigger")
    body = await read_json(request)
    if "enabled" not in body:
        raise _bad("enabled is required")
    enabled = _enabled(body["enabled"])
    trigger = await run_sync(
        _store(request).update, repo.id, request.path_params["trigger_id"], {"enabled": enabled}
    )
    return JSONResponse(trigger_json(trigger))


async def delete_trigger(request: Request) -> Response:
    """``DELETE T``: delete the trigger and its run history."""
    _, repo = resolve_repo(request, "DeleteSandboxTrigger")
    await run_sync(_store(request).delete, repo.id, request.path_params["trigger_id"])
    return Response(status_code=204)


async def list_runs(request: Request) -> Response:
    """``GET T/runs``: the trigger's runs, newest first."""
    _, repo = resolve_repo(request, "GetSandboxTrigger")
    amount, after = page_params(request)
    runs, has_more = await run_sync(
        _store(request).list_runs, repo.id, request.path_params["trigger_id"], after, amount
    )
    return paged([run_json(r) for r in runs], has_more, str(runs[-1].seq) if runs else None)


_BASE = "/organizations/{org}/repositories/{repo}/sandbox-triggers"

routes: list[BaseRoute] = [
    Route(_BASE, list_triggers, methods=["GET"]),
    Route(_BASE, create_trigger, methods=["POST"]),
    Route(_BASE + "/{trigger_id}", get_trigger, methods=["GET"]),
    Route(_BASE + "/{trigger_id}", update_trigger, methods=["PUT"]),
    Route(_BASE + "/{trigger_id}", patch_trigger, methods=["PATCH"]),
    Route(_BASE + "/{trigger_id}", delete_trigger, methods=["DELETE"]),
    Route(_BASE + "/{trigger_id}/runs", list_runs, methods=["GET"]),
]
