"""Sandboxes (CONTRACT §4.5 #34 to #40, §5.7, §6.1, §6.2, and the status long poll of our compute extensions).

Routes are relative to ``/api/v1``. The runtime (``app.state.runtime``) does the work; these handlers
validate, authorize and shape responses. A sandbox-scoped token (``tst-``) cannot manage sandboxes.

In a cluster, a sandbox another node runs is read from the shared table (`lookup_sandbox` returns a
`RemoteSandbox`): its object, status and status long poll are answered here; its logs, cancel and finish
are forwarded to the owning node (`owner_url`), which checks the request again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from tilde.server.api._validate import opt_str
from tilde.server.api.common import page_params, paged, read_json, require_principal, resolve_repo, run_sync
from tilde.server.cluster.forward import forward_http, place_sandbox
from tilde.server.errors import ApiError
from tilde.server.registry import RepoRecord
from tilde.server.sandbox.record import RemoteSandbox, SandboxRecord
from tilde.server.sandbox.runtime import SandboxRuntime

__all__ = ["lookup_sandbox", "owner_url", "routes", "runtime_of"]

SANDBOXES = "/organizations/{org}/repositories/{repo}/sandboxes"
SANDBOX = SANDBOXES + "/{sandbox_id}"
#: Longest status long poll (seconds).
MAX_WAIT = 60.0
#: How often a log stream of a running sandbox looks for new output when nothing else wakes it.
LOG_POLL = 0.1
_LOG_CHUNK = 64 * 1024


def runtime_of(conn: HTTPConnection) -> SandboxRuntime:
    """Return ``app.state.runtime`` (503 when this server has none)."""
    runtime = getattr(conn.app.state, "runtime", None)
    if runtime is None:
        raise ApiError(503, "runtime_unavailable", "this server has no sandbox runtime")
    assert isinstance(runtime, SandboxRuntime)
    return runtime


async def lookup_sandbox(conn: HTTPConnection, action: str) -> tuple[RepoRecord, SandboxRecord]:
    """Return the repository and the sandbox named by the path, after authorizing ``action``.

    In a cluster a sandbox of another node comes back as a `RemoteSandbox` read from the shared table.
    """
    _, repo = resolve_repo(conn, action)
    runtime = runtime_of(conn)
    sandbox_id = conn.path_params["sandbox_id"]
    record = runtime.local(repo.id, sandbox_id)
    if record is None:
        if runtime.shared is None:
            raise ApiError(404, "not_found", f"sandbox {sandbox_id} not found")
        record = await run_sync(runtime.get, repo.id, sandbox_id)
    return repo, record


async def owner_url(conn: HTTPConnection, record: RemoteSandbox) -> str:
    """Return the base URL of the node running ``record`` (503 ``node_unavailable`` when it is not alive)."""
    url: str | None = await run_sync(conn.app.state.cluster.node_url, record.node_id)
    if url is None:
        raise ApiError(
            503,
            "node_unavailable",
            f"the node running sandbox {record.id} ({record.node_id}) is not alive",
            {"Retry-After": "1"},
        )
    return url


async def _forward_stop(request: Request, record: RemoteSandbox) -> Response:
    """Forward a cancel or finish to the owner (409 here when the shared record already ended)."""
    if record.is_terminal:
        raise ApiError(409, "conflict", f"sandbox {record.id} is already {record.status}")
    return await forward_http(request, await owner_url(request, record))


async def create_sandbox(request: Request) -> Response:
    """Create a sandbox: ``201 {sandbox_id}``."""
    org, repo = resolve_repo(request, "CreateSandbox")
    placed = await place_sandbox(request)  # a replica without sandboxes has a sandbox node create it
    if placed is not None:
        return placed
    runtime = runtime_of(request)
    body = await read_json(request)
    sandbox_id = await run_sync(
        runtime.create, org_name=org.name, repo=repo, principal=require_principal(request), spec=body
    )
    return JSONResponse({"sandbox_id": sandbox_id}, status_code=201)


async def list_sandboxes(request: Request) -> Response:
    """List a page of the repository's sandboxes (full Sandbox objects)."""
    _, repo = resolve_repo(request, "ListSandboxes")
    amount, after = page_params(request)
    runtime = runtime_of(request)
    if runtime.shared is not None:
        records, has_more = await run_sync(runtime.list, repo.id, after, amount)
    else:
        records, has_more = runtime.list(repo.id, after, amount)
    return paged([r.full_json() for r in records], has_more, records[-1].id if records else None)


async def get_sandbox(request: Request) -> Response:
    """Return the full Sandbox object."""
    _, record = await lookup_sandbox(request, "GetSandbox")
    return JSONResponse(record.full_json())


def _wait_param(request: Request) -> float | None:
    raw = request.query_params.get("wait")
    if raw is None or raw == "":
        return None
    try:
        wait = float(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", "wait must be a number of seconds") from None
    if not wait >= 0:
        raise ApiError(400, "invalid_parameter", "wait must be a number of seconds >= 0")
    return min(wait, MAX_WAIT)


async def sandbox_status(request: Request) -> Response:
    """SandboxStatus; with ``wait``, held while the status equals ``while`` (default: while active)."""
    _, record = await lookup_sandbox(request, "GetSandbox")
    wait = _wait_param(request)
    if wait:
        await record.wait_while(request.query_params.get("while") or None, wait)
    return JSONResponse(record.status_json())


async def cancel_sandbox(request: Request) -> Response:
    """Cancel: discard the sandbox's changes (``202``; ``409`` when it already ended)."""
    _, record = await lookup_sandbox(request, "CancelSandbox")
    if isinstance(record, RemoteSandbox):
        return await _forward_stop(request, record)
    runtime_of(request).cancel(record)
    return JSONResponse({"message": f"sandbox {record.id} is being cancelled"}, status_code=202)


async def finish_sandbox(request: Request) -> Response:
    """Finish a service sandbox: stop it gracefully, then commit (202; 400 unless service; 409 if ended).

    The SDK sends no body; an optional ``{"message"}`` names the commit (``tilde exec -m``).
    """
    _, record = await lookup_sandbox(request, "FinishSandbox")
    if isinstance(record, RemoteSandbox):
        return await _forward_stop(request, record)
    body = await read_json(request, optional=True)
    message = opt_str(body, "message", max_len=4000) or None
    runtime_of(request).finish(record, message)
    return JSONResponse({"message": f"sandbox {record.id} is finishing"}, status_code=202)


async def _follow(record: SandboxRecord, path: str) -> AsyncIterator[bytes]:
    """Yield a log file's bytes, following it while the sandbox is active."""
    try:
        handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        return
    try:
        while True:
            data = handle.read(_LOG_CHUNK)
            if data:
                yield data
                continue
            if record.is_terminal:
                rest = handle.read()
                if rest:
                    yield rest
                    continue
                return
            await record.wait_change(LOG_POLL)
    finally:
        handle.close()


async def stdout_log(request: Request) -> Response:
    """Stream the main command's stdout and stderr merged in order (``text/plain``, live while running)."""
    _, record = await lookup_sandbox(request, "GetSandbox")
    if isinstance(record, RemoteSandbox):
        return await _forward_logs(request, record)
    if not os.path.exists(record.log_path):
        raise ApiError(410, "gone", "the sandbox's logs are no longer available")
    return StreamingResponse(_follow(record, str(record.log_path)), media_type="text/plain; charset=utf-8")


async def network_log(request: Request) -> Response:
    """Outbound request decisions as NDJSON (empty: the local runtime has no egress proxy)."""
    _, record = await lookup_sandbox(request, "GetSandbox")
    if isinstance(record, RemoteSandbox):
        return await _forward_logs(request, record)
    body: Any = b""
    with contextlib.suppress(FileNotFoundError):
        body = await asyncio.to_thread(record.network_log_path.read_bytes)
    return Response(body, media_type="application/x-ndjson")


async def _forward_logs(request: Request, record: RemoteSandbox) -> Response:
    """Forward a log request to the owner; the logs of an ended sandbox whose node is gone are gone too."""
    if record.is_terminal and await run_sync(request.app.state.cluster.node_url, record.node_id) is None:
        raise ApiError(410, "gone", "the sandbox's logs are no longer available (its node is gone)")
    return await forward_http(request, await owner_url(request, record))


routes: list[BaseRoute] = [
    Route(SANDBOXES, create_sandbox, methods=["POST"]),
    Route(SANDBOXES, list_sandboxes, methods=["GET"]),
    Route(SANDBOX, get_sandbox, methods=["GET"]),
    Route(SANDBOX, cancel_sandbox, methods=["DELETE"]),
    Route(SANDBOX + "/status", sandbox_status, methods=["GET"]),
    Route(SANDBOX + "/finish", finish_sandbox, methods=["POST"]),
    Route(SANDBOX + "/logs/stdout", stdout_log, methods=["GET"]),
    Route(SANDBOX + "/logs/network", network_log, methods=["GET"]),
]
