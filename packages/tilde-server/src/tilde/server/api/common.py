"""Helpers every route module uses: the caller, the repository from the path, JSON bodies, pagination.

Other route modules (sandboxes, exec, triggers) import `require_principal`, `resolve_repo`, `run_sync`,
`notify_commit` and the accessors from here.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.datastructures import State
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse

from tilde.server.api._json import loads as json_loads
from tilde.server.auth import Authenticator, Principal
from tilde.server.config import ServerConfig
from tilde.server.errors import ApiError
from tilde.server.registry import OrgRecord, Registry, RepoRecord
from tilde.server.storage import CommitInfo, InvalidArgument, StorageEngine, validate_path

logger = logging.getLogger("tilde.server")

T = TypeVar("T")

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
#: Largest JSON request body accepted (a 1000-path delete_many is about 1 MiB).
MAX_JSON_BODY = 8 * 1024 * 1024


def engine_of(conn: HTTPConnection) -> StorageEngine:
    """Return the storage engine (``app.state.engine``)."""
    engine: StorageEngine = conn.app.state.engine
    return engine


def registry_of(conn: HTTPConnection) -> Registry:
    """Return the registry (``app.state.registry``)."""
    registry: Registry = conn.app.state.registry
    return registry


def auth_of(conn: HTTPConnection) -> Authenticator:
    """Return the authenticator (``app.state.auth``)."""
    auth: Authenticator = conn.app.state.auth
    return auth


def config_of(conn: HTTPConnection) -> ServerConfig:
    """Return the server configuration (``app.state.config``)."""
    config: ServerConfig = conn.app.state.config
    return config


def require_principal(conn: HTTPConnection) -> Principal:
    """Return the authenticated caller (401 when the request was not authenticated)."""
    principal = conn.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer <key>)")
    return principal


def resolve_org(conn: HTTPConnection, action: str = "GetOrganization", **resource: str | None) -> OrgRecord:
    """Return the organization named by the ``org`` path parameter, after checking ``action`` on it.

    Args:
        conn: The request (or websocket).
        action: The catalogue action to authorize (`tilde.server.iam.route_actions.ROUTE_ACTIONS` says which
            one each route checks).
        **resource: Resource arguments of the action (``agent``, ``role``, ``repository``, ``path``).

    """
    principal = require_principal(conn)
    org = lookup_org(conn, principal, conn.path_params["org"], action)
    auth_of(conn).authorize(principal, action, org, None, **resource)
    return org


@overload
def lookup_org(conn: HTTPConnection, principal: Principal, name: str, action: str) -> OrgRecord: ...


@overload
def lookup_org(
    conn: HTTPConnection, principal: Principal, name: str, action: str, *, repo_name: str
) -> tuple[OrgRecord, RepoRecord | None]: ...


def lookup_org(
    conn: HTTPConnection, principal: Principal, name: str, action: str, *, repo_name: str | None = None
) -> OrgRecord | tuple[OrgRecord, RepoRecord | None]:
    """Return the live organization ``name``, answering an unknown name as the caller's outsider refusal.

    Organization names are not secret from the server's administrator, who gets a 404 for an unknown name;
    anyone else gets the very 403 (same code and message) an existing organization they are not in gives,
    so a non-member cannot tell which names exist. With ``repo_name``, the organization's live repository of
    that name (or None) comes back with it, from the same query.
    """
    registry = registry_of(conn)
    try:
        if repo_name is not None:
            return registry.get_org_and_repo(name, repo_name)
        return registry.get_org(name)
    except ApiError as error:
        if error.status != 404 or (principal.type == "user" and principal.id == registry.admin.id):
            raise
        raise ApiError(403, "forbidden", f"no access to organization {name!r} ({action} refused)") from None


def resolve_repo(
    conn: HTTPConnection, action: str = "GetRepository", **resource: str | None
) -> tuple[OrgRecord, RepoRecord]:
    """Return ``(org, repo)`` named by the ``org`` and ``repo`` path parameters, after checking ``action``.

    A caller outside the organization gets 403 whether or not it exists (`lookup_org`), without the
    repository being looked up; a member gets 404 for an unknown repository only when it would be allowed
    ``action`` on a repository of that name, and otherwise the same 403 an existing one gives.

    Args:
        conn: The request (or websocket).
        action: The action to authorize (``"GetObject"``, ``"PutObject"``, ``"CommitSession"``, ...).
        **resource: Resource arguments besides the repository (``path``, ``agent``, ``role``); the
            ``repository`` argument is the repository's name.

    """
    principal = require_principal(conn)
    name = conn.path_params["repo"]
    # One query finds both rows; the repository's is not used (nor its absence told) before the checks.
    org, repo = lookup_org(conn, principal, conn.path_params["org"], action, repo_name=name)
    auth = auth_of(conn)
    if not auth.can_access_org(principal, org):
        # Checked before the repository is looked at, so outsiders cannot probe repository names.
        raise ApiError(403, "forbidden", f"no access to organization {org.name!r} ({action} refused)")
    if repo is None:
        # A member whose policies would refuse this repository learns nothing from its absence.
        auth.authorize(principal, action, org, None, **{"repository": name, **resource})
        raise ApiError(404, "not_found", f"repository {name!r} not found")
    auth.authorize(principal, action, org, repo, **resource)
    return org, repo


def check_session(conn: HTTPConnection, session_id: str) -> None:
    """Raise 403 when a sandbox-scoped caller names a session other than its own."""
    Authenticator.check_session(require_principal(conn), session_id)


def session_query(conn: HTTPConnection) -> str:
    """Return the required ``session_id`` query parameter (403 when a sandbox token names another session)."""
    session_id = required_query(conn, "session_id")
    check_session(conn, session_id)
    return session_id


async def run_sync(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call (engine, file I/O) in the worker thread pool."""
    return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))


async def read_small_body(request: Request, limit: int) -> bytes:
    """Return the whole request body: 413 as soon as its declared or received size passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"JSON bodies are limited to {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"JSON bodies are limited to {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """Parse the request body as a JSON object (400 otherwise).

    Args:
        request: The request.
        optional: Treat an empty body as ``{}``.

    """
    raw = await read_small_body(request, MAX_JSON_BODY)
    if not raw.strip():
        if optional:
            return {}
        raise ApiError(400, "invalid_json", "a JSON object body is required")
    data = json_loads(raw)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    return data


def query(request: HTTPConnection, name: str, *, required: bool = False) -> str | None:
    """Return a query parameter (400 when ``required`` and missing or empty, or not UTF-8 once decoded)."""
    value = request.query_params.get(name)
    if required and not value:
        raise ApiError(400, "missing_parameter", f"query parameter {name!r} is required")
    if value is not None and "\ufffd" in value:
        _check_utf8_query(request)
    return value


def _check_utf8_query(request: HTTPConnection) -> None:
    """Raise 400 when the raw query string percent-decodes to invalid UTF-8 (``path=%FF``).

    Starlette decodes such escapes to U+FFFD, which would silently name a different path; a correctly
    encoded U+FFFD (``%EF%BF%BD``) passes.
    """
    raw = request.scope.get("query_string", b"").decode("latin-1")
    try:
        parse_qsl(raw, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_parameter", "the query string is not percent-encoded UTF-8") from None


def required_query(request: HTTPConnection, name: str) -> str:
    """Return a non-empty query parameter (400 otherwise)."""
    value = query(request, name, required=True)
    assert value is not None
    return value


def object_path(request: HTTPConnection, name: str = "path") -> str:
    """Return a validated object path from the query string (400 for bad paths)."""
    return checked_path(required_query(request, name))


def checked_path(path: str) -> str:
    """Validate an object path (400 ``invalid_path`` when it is malformed)."""
    try:
        return validate_path(path)
    except InvalidArgument as exc:
        raise ApiError(400, exc.code or "invalid_path", exc.message) from None


def page_params(request: HTTPConnection) -> tuple[int, str]:
    """Return ``(amount, after)`` per CONTRACT §3 (400 when ``amount`` is not an integer in 1..1000)."""
    raw = request.query_params.get("amount")
    amount = DEFAULT_PAGE_SIZE
    if raw is not None:
        try:
            amount = int(raw)
        except ValueError:
            raise ApiError(400, "invalid_parameter", "amount must be an integer") from None
        if not 1 <= amount <= MAX_PAGE_SIZE:
            raise ApiError(400, "invalid_parameter", f"amount must be between 1 and {MAX_PAGE_SIZE}")
    return amount, query(request, "after") or ""


def paged(results: Sequence[Any], has_more: bool, next_offset: str | None) -> JSONResponse:
    """Return the paginated envelope ``{results, pagination}``."""
    if has_more and not next_offset:
        # A null cursor with has_more would make the client loop on the first page forever.
        raise RuntimeError("has_more without a cursor")
    return JSONResponse(
        {
            "results": list(results),
            "pagination": {
                "has_more": has_more,
                # A string in the contract: the last page says "" rather than null.
                "next_offset": next_offset if has_more else "",
                "max_per_page": MAX_PAGE_SIZE,
            },
        }
    )


_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_SANDBOX_RELAY_HOST = re.compile(r"127\.0\.0\.1:[0-9]{1,5}")


def public_base_url(conn: HTTPConnection) -> str:
    """Return the externally visible ``scheme://host[:port]`` for the absolute URLs the server hands out.

    That is the configured ``public_url``, else the address the server listens on; for a wildcard listening
    host (``0.0.0.0``, ``::``), the local address this connection arrived at. Never the request's ``Host``
    header, which the client chooses (upload URLs would then point wherever it says) — except for a sandbox's
    own token, whose answers go back into that sandbox: its ``127.0.0.1:PORT`` relay is kept.
    """
    principal = conn.scope.get("state", {}).get("principal")
    if isinstance(principal, Principal) and principal.scope is not None:
        # Code in a sandbox reaches the server through the agent's relay on its own loopback port, and only
        # that sandbox sees the answer: hand it URLs on that relay (a loopback address, nothing else).
        relay = _SANDBOX_RELAY_HOST.fullmatch(conn.headers.get("host", ""))
        if relay is not None:
            return f"http://{relay.group(0)}"
    config = config_of(conn)
    if config.public_url:
        return config.public_url.rstrip("/")
    host, port = config.host, config.port
    server = conn.scope.get("server")
    if host in _WILDCARD_HOSTS and server:
        host, port = str(server[0]), int(server[1] or port)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


CommitListener = Callable[[str, RepoRecord, CommitInfo], None]


async def announce_commit(app_state: State, org_name: str, repo: RepoRecord, commit: CommitInfo) -> None:
    """`notify_commit` from a request handler: with commit journals (database writes), in a worker thread.

    A cluster's journal records the commit in PostgreSQL before the request is answered; run on the event
    loop, that round trip would stall every other request. Without journals nothing blocks, so no thread hop.
    """
    if getattr(app_state, "commit_journal", None):
        await run_sync(notify_commit, app_state, org_name, repo, commit)
    else:
        notify_commit(app_state, org_name, repo, commit)


def notify_commit(app_state: State, org_name: str, repo: RepoRecord, commit: CommitInfo) -> None:
    """Tell every listener in ``app_state.commit_listeners`` about a new commit, in a worker thread.

    Called by the HTTP layer after every commit it makes (session commit, approval, revert); the sandbox
    runtime calls it for the commits it makes. Listener errors are logged, never raised. Callables in
    ``app_state.commit_journal`` (same signature) run first, in the caller's thread, so what they record is
    stored before the request is answered.

    Args:
        app_state: ``app.state``.
        org_name: The repository's organization name.
        repo: The repository record.
        commit: The new commit.

    """
    # Journals record the commit durably before the request is answered (a cluster's trigger queue).
    for journal in list(getattr(app_state, "commit_journal", ())):
        try:
            journal(org_name, repo, commit)
        except Exception:
            logger.exception("commit journal %r failed for commit %s", journal, commit.id)
    listeners: list[CommitListener] = list(getattr(app_state, "commit_listeners", []))
    if not listeners:
        return

    def deliver() -> None:
        for listener in listeners:
            try:
                listener(org_name, repo, commit)
            except Exception:
                logger.exception("commit listener %r failed for commit %s", listener, commit.id)

    executor = getattr(app_state, "listener_executor", None)
    if executor is None:
        deliver()
        return
    try:
        executor.submit(deliver)
    except RuntimeError:  # the server is shutting down
        logger.warning("commit %s not announced to listeners: the server is shutting down", commit.id)
