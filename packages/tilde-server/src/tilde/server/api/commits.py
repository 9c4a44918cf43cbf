"""Commits: log, one commit, diff and revert (CONTRACT #30-#33, §5.6)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._validate import opt_str, str_map
from tilde.server.api.common import (
    announce_commit,
    engine_of,
    page_params,
    paged,
    query,
    read_json,
    require_principal,
    required_query,
    resolve_repo,
    run_sync,
)
from tilde.server.api.serialize import commit_json, listing_json

R = "/organizations/{org}/repositories/{repo}"


async def log(request: Request) -> Response:
    """List history newest first, from ``ref`` (default: the head)."""
    _, repo = resolve_repo(request, "ListCommits")
    amount, after = page_params(request)
    page = await run_sync(
        engine_of(request).log, repo.id, ref=query(request, "ref") or None, after=after or None, limit=amount
    )
    return paged([commit_json(c) for c in page.items], page.has_more, page.next_cursor)


async def get_commit(request: Request) -> Response:
    """Return one commit."""
    _, repo = resolve_repo(request, "GetCommit")
    commit = await run_sync(engine_of(request).get_commit, repo.id, request.path_params["commit_id"])
    return JSONResponse(commit_json(commit))


async def diff(request: Request) -> Response:
    """List what changed between ``left`` (default: the empty tree) and ``right``, with ``status``."""
    _, repo = resolve_repo(request, "GetCommit")
    amount, after = page_params(request)
    page = await run_sync(
        engine_of(request).diff,
        repo.id,
        left=query(request, "left") or None,
        right=required_query(request, "right"),
        prefix=query(request, "prefix") or "",
        delimiter=query(request, "delimiter") or "",
        after=after,
        limit=amount,
    )
    return paged([listing_json(i) for i in page.items], page.has_more, page.next_cursor)


async def revert(request: Request) -> Response:
    """Commit the inverse of a commit on top of the head: ``201 {commit_id}``."""
    org, repo = resolve_repo(request, "RevertCommit")
    body = await read_json(request, optional=True)
    commit = await run_sync(
        engine_of(request).revert,
        repo.id,
        request.path_params["commit_id"],
        actor=require_principal(request),
        message=opt_str(body, "message") or None,
        metadata=str_map(body, "metadata"),
    )
    await announce_commit(request.app.state, org.name, repo, commit)
    return JSONResponse({"commit_id": commit.id}, status_code=201)


routes: list[BaseRoute] = [
    Route(R + "/log", log, methods=["GET"]),
    Route(R + "/commits/{commit_id}", get_commit, methods=["GET"]),
    Route(R + "/commits/{commit_id}/revert", revert, methods=["POST"]),
    Route(R + "/diff", diff, methods=["GET"]),
]
