"""Sessions: create, commit (with the approval workflow), rollback, approve (CONTRACT #13-#16, §5.1).

A repository with ``agent_commits_require_approval`` parks commits made by agent principals: the commit
answers ``202 {approval_required, session_id, message, api_url, web_url}``, ``HEAD …/approve`` answers 200
while the session waits and 404 once a user approved it (``POST …/approve``) or anyone rolled it back.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._validate import opt_str, str_map
from tilde.server.api.common import (
    announce_commit,
    check_session,
    config_of,
    engine_of,
    page_params,
    paged,
    public_base_url,
    read_json,
    registry_of,
    require_principal,
    resolve_repo,
    run_sync,
)
from tilde.server.api.serialize import change_json
from tilde.server.errors import ApiError
from tilde.server.registry import RepoRecord
from tilde.server.storage.errors import StorageError

SESSION = "/organizations/{org}/repositories/{repo}/sessions/{session_id}"


async def create_session(request: Request) -> Response:
    """Open a session on the current head."""
    _, repo = resolve_repo(request, "CreateSession")
    info = await run_sync(engine_of(request).create_session, repo.id, require_principal(request))
    return JSONResponse({"session_id": info.id}, status_code=201)


def approval_links(request: Request, org_name: str, repo: RepoRecord, session_id: str) -> dict[str, str]:
    """Return the ``api_url`` and ``web_url`` of a pending approval."""
    base = public_base_url(request)
    api_url = f"{base}/api/v1/organizations/{org_name}/repositories/{repo.name}/sessions/{session_id}/approve"
    web_url = config_of(request).approval_web_url.format(
        base=base, org=org_name, repo=repo.name, session_id=session_id
    )
    return {"api_url": api_url, "web_url": web_url}


async def commit_session(request: Request) -> Response:
    """Commit a session: 200 ``{commit_id}``, or 202 when an agent's commit needs approval.

    With an ``Idempotency-Key`` header the commit can be retried safely: a repeat with the same key answers
    what the first request did (the same ``commit_id``, or the 202) instead of a 409 for a session already
    committed. The session is committed once either way.
    """
    org, repo = resolve_repo(request, "CommitSession")
    session_id = request.path_params["session_id"]
    check_session(request, session_id)
    principal = require_principal(request)
    body = await read_json(request, optional=True)
    message = opt_str(body, "message", "") or ""
    metadata = str_map(body, "metadata")
    key = _idempotency_key(request)
    claimed = key is not None and await run_sync(
        registry_of(request).claim_commit_key, repo.id, session_id, key
    )
    if claimed:
        earlier = await _earlier_outcome(request, org.name, repo, session_id)
        if earlier is not None:
            return earlier
    require_approval = repo.agent_commits_require_approval and principal.type == "agent"
    try:
        outcome = await run_sync(
            engine_of(request).commit_session,
            repo.id,
            session_id,
            message=message,
            actor=principal,
            metadata=metadata,
            require_approval=require_approval,
        )
    except (ApiError, StorageError):
        # The first request with this key may have committed while this one waited: answer as it did.
        earlier = await _earlier_outcome(request, org.name, repo, session_id) if claimed else None
        if earlier is None:
            raise
        return earlier
    if outcome.status == "approval_required":
        return _approval_response(request, org.name, repo, session_id)
    commit = outcome.commit
    if outcome.status == "committed" and commit is not None:
        await announce_commit(request.app.state, org.name, repo, commit)
    return JSONResponse({"commit_id": commit.id if commit else "", "status": outcome.status})


def _idempotency_key(request: Request) -> str | None:
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    if not 1 <= len(raw) <= 255 or not raw.isascii() or not raw.isprintable():
        raise ApiError(400, "invalid_header", "Idempotency-Key must be 1 to 255 printable ASCII characters")
    return raw


async def _earlier_outcome(
    request: Request, org_name: str, repo: RepoRecord, session_id: str
) -> Response | None:
    """Return the answer to a commit made (or awaiting approval) under this request's key, else None."""
    info = await run_sync(engine_of(request).get_session, repo.id, session_id)
    if info.state == "committed":
        # A session with nothing staged is closed as committed without a commit.
        status = "committed" if info.commit_id else "no_changes"
        return JSONResponse({"commit_id": info.commit_id or "", "status": status})
    if info.state == "pending_approval":
        return _approval_response(request, org_name, repo, session_id)
    return None


def _approval_response(request: Request, org_name: str, repo: RepoRecord, session_id: str) -> Response:
    body_202: dict[str, Any] = {
        "approval_required": True,
        "session_id": session_id,
        "message": "the commit is waiting for a user's approval",
        **approval_links(request, org_name, repo, session_id),
    }
    return JSONResponse(body_202, status_code=202)


async def rollback_session(request: Request) -> Response:
    """Discard a session (also resolves a pending approval)."""
    _, repo = resolve_repo(request, "RollbackSession")
    session_id = request.path_params["session_id"]
    check_session(request, session_id)
    await run_sync(engine_of(request).rollback_session, repo.id, session_id)
    return Response(status_code=204)


async def _pending(request: Request, action: str) -> tuple[str, RepoRecord, str]:
    # Reading what waits for approval lists the whole session: ListObjects on the repository's root.
    org, repo = resolve_repo(request, action, **({"path": ""} if action == "ListObjects" else {}))
    session_id = request.path_params["session_id"]
    info = await run_sync(engine_of(request).get_session, repo.id, session_id)
    if info.state != "pending_approval":
        raise ApiError(404, "not_found", f"session {session_id} is not waiting for approval ({info.state})")
    return org.name, repo, session_id


async def head_approval(request: Request) -> Response:
    """Answer 200 while the session waits for approval, 404 once it is resolved.

    Whoever may commit may poll: a blocking ``session.commit()`` polls this after its 202, so an agent allowed
    to commit but not to list would otherwise fail while waiting for its own approval.
    """
    await _pending(request, "CommitSession")
    return Response(status_code=200)


async def list_approval(request: Request) -> Response:
    """List the changes waiting for approval (paged EntryRecord); HEAD only tells whether it waits."""
    if request.method == "HEAD":
        return await head_approval(request)
    _, repo, session_id = await _pending(request, "ListObjects")
    amount, after = page_params(request)
    page = await run_sync(engine_of(request).list_changes, repo.id, session_id, after=after, limit=amount)
    return paged([change_json(c) for c in page.items], page.has_more, page.next_cursor)


async def approve(request: Request) -> Response:
    """Approve and commit a pending session (users only)."""
    org_name, repo, session_id = await _pending(request, "ApproveSession")
    body = await read_json(request, optional=True)
    commit = await run_sync(
        engine_of(request).approve_session,
        repo.id,
        session_id,
        actor=require_principal(request),
        message=opt_str(body, "message") or None,
        metadata=str_map(body, "metadata"),
    )
    await announce_commit(request.app.state, org_name, repo, commit)
    return JSONResponse({"commit_id": commit.id})


routes: list[BaseRoute] = [
    Route("/organizations/{org}/repositories/{repo}/sessions", create_session, methods=["POST"]),
    Route(SESSION, commit_session, methods=["POST"]),
    Route(SESSION, rollback_session, methods=["DELETE"]),
    Route(SESSION + "/approve", list_approval, methods=["GET", "HEAD"]),
    Route(SESSION + "/approve", approve, methods=["POST"]),
]
