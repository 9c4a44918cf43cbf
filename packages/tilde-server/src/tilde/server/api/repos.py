"""Repositories (CONTRACT #8-#12), including the legacy fields and ``agent_commits_require_approval``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._validate import REPO_NAME_RE, check_name, opt_bool, opt_int, opt_str
from tilde.server.api.common import (
    engine_of,
    page_params,
    paged,
    read_json,
    registry_of,
    require_principal,
    resolve_org,
    resolve_repo,
    run_sync,
)
from tilde.server.api.serialize import repo_json

#: Longest retention window and session lifetime a repository may set (100 years; the contract gives none).
MAX_DAYS = 36_500


def _repo_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Validate the optional repository fields present in ``body`` (unknown keys are ignored)."""
    fields: dict[str, Any] = {}
    for key in ("description", "visibility"):
        if body.get(key) is not None:
            fields[key] = opt_str(body, key, max_len=10_000 if key == "description" else 50)
    for key in ("retention_days", "session_max_duration_days"):
        if key in body:
            fields[key] = opt_int(body, key, minimum=1, maximum=MAX_DAYS)
    if body.get("agent_commits_require_approval") is not None:
        fields["agent_commits_require_approval"] = opt_bool(body, "agent_commits_require_approval")
    return fields


async def list_repos(request: Request) -> Response:
    """List an organization's repositories by name."""
    org = resolve_org(request, "ListRepositories")
    amount, after = page_params(request)
    repos, has_more = registry_of(request).list_repos(org.id, after, amount)
    return paged([repo_json(r) for r in repos], has_more, repos[-1].name if repos else None)


async def create_repo(request: Request) -> Response:
    """Create a repository (duplicate name → 409)."""
    org = resolve_org(request, "CreateRepository")
    principal = require_principal(request)
    body = await read_json(request)
    name = check_name(body.get("name"), "name", REPO_NAME_RE)
    fields = _repo_fields(body)
    registry = registry_of(request)
    repo = registry.create_repo(org.id, name, fields, (principal.type, principal.id))
    try:
        await run_sync(engine_of(request).init_repository, repo.id)
    except BaseException:
        registry.delete_repo(repo.id)
        raise
    return JSONResponse(repo_json(repo), status_code=201)


async def get_repo(request: Request) -> Response:
    """Return one repository."""
    _, repo = resolve_repo(request)
    return JSONResponse(repo_json(repo))


async def update_repo(request: Request) -> Response:
    """Update any subset of description, visibility, retention, session duration and approval setting."""
    _, repo = resolve_repo(request, "UpdateRepository")
    body = await read_json(request, optional=True)
    updated = registry_of(request).update_repo(repo.id, _repo_fields(body))
    return JSONResponse(repo_json(updated))


async def delete_repo(request: Request) -> Response:
    """Soft-delete a repository: the record stays, its name is free again.

    The engine drops the repository's commits, versions and sessions (not just its sessions); bytes nothing
    else refers to are collected at the next start-up.
    """
    _, repo = resolve_repo(request, "DeleteRepository")
    registry_of(request).delete_repo(repo.id)
    await run_sync(engine_of(request).drop_repository, repo.id)
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/organizations/{org}/repositories", list_repos, methods=["GET"]),
    Route("/organizations/{org}/repositories", create_repo, methods=["POST"]),
    Route("/organizations/{org}/repositories/{repo}", get_repo, methods=["GET"]),
    Route("/organizations/{org}/repositories/{repo}", update_repo, methods=["PUT"]),
    Route("/organizations/{org}/repositories/{repo}", delete_repo, methods=["DELETE"]),
]
