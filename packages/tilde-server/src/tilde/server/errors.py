"""The contract's JSON error body for every failure the server can produce.

Every error response, whether raised by a handler (`ApiError`), by the storage engine (`StorageError`), by the
router (unknown route, wrong method) or by a bug (any other exception), carries the body
``{"message", "code", "request_id"}`` and an ``X-Request-Id`` header with the same id.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tilde.server._db import DatabaseUnavailable
from tilde.server.storage.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    RangeNotSatisfiable,
    SessionClosed,
    StorageError,
)

logger = logging.getLogger("tilde.server")

#: Storage-engine error class -> HTTP status (a subclass answers as its nearest listed base; others 400).
_STORAGE_STATUS: dict[type[StorageError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidArgument: 400,
    SessionClosed: 409,
    RangeNotSatisfiable: 416,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    416: "range_not_satisfiable",
}


class ApiError(Exception):
    """A client-visible error; raising it anywhere in a handler yields the contract's JSON error body.

    Args:
        status: The HTTP status code (4xx or 5xx).
        code: A short machine-readable code, e.g. ``"not_found"``.
        message: Human-readable text.
        headers: Extra response headers (e.g. ``Content-Range`` on a 416).

    """

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


#: Request ids only tell requests apart in logs and error bodies (nothing trusts them), so they come from a
#: pseudo-random generator seeded from the OS (again in a forked child) rather than from a system call each.
_request_ids = random.Random()
os.register_at_fork(after_in_child=_request_ids.seed)


def new_request_id() -> str:
    """Return a fresh request id, ``"req-<16 hex digits>"``."""
    return f"req-{_request_ids.getrandbits(64):016x}"


def request_id_of(scope: Scope) -> str:
    """Return the request id assigned by `RequestIdMiddleware` (a fresh one if the middleware did not run)."""
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if not isinstance(rid, str):
        rid = new_request_id()
        state["request_id"] = rid
    return rid


def error_response(
    scope: Scope, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """Build the JSON error response for ``scope``.

    Args:
        scope: The ASGI scope of the failing request (for its request id).
        status: HTTP status.
        code: Machine-readable code.
        message: Human-readable text.
        headers: Extra headers.

    """
    rid = request_id_of(scope)
    all_headers = {"X-Request-Id": rid, **(headers or {})}
    body = {"message": message, "code": code, "request_id": rid}
    return JSONResponse(body, status_code=status, headers=all_headers)


def _api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request.scope, exc.status, exc.code, exc.message, exc.headers)


def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else code.replace("_", " ")
    if exc.status_code == 404:
        message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
        allowed = allowed_methods(request.app.routes, request.url.path)
        if allowed:
            return error_response(
                request.scope, 405, code, message, {**(exc.headers or {}), "Allow": ", ".join(allowed)}
            )
    return error_response(request.scope, exc.status_code, code, message, exc.headers)


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str]:
    """Return every method some route answers on ``path``, sorted (the ``Allow`` header of a 405).

    Starlette's own header names only the methods of the first route matching the path, while this server
    declares one route per method: ``PATCH`` on a repository would otherwise be told ``Allow: GET, HEAD``.
    """
    methods: set[str] = set()
    for route in routes:
        if isinstance(route, Mount):
            if path.startswith(route.path + "/"):
                methods.update(allowed_methods(route.routes, path[len(route.path) :]))
        elif isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods.update(route.methods)
    return sorted(methods)


def _storage_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StorageError)
    status = next((_STORAGE_STATUS[k] for k in type(exc).__mro__ if k in _STORAGE_STATUS), 400)
    return error_response(request.scope, status, exc.code or _HTTP_CODES.get(status, "error"), exc.message)


def _unhandled_handler(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this response is sent, so uvicorn logs the traceback; log it here too so it is
    # tied to the request id in our own logger.
    logger.error(
        "unhandled error in %s %s [%s]",
        request.method,
        request.url.path,
        request_id_of(request.scope),
        exc_info=exc,
    )
    return error_response(request.scope, 500, "internal_error", "internal server error")


def _database_unavailable_handler(request: Request, exc: Exception) -> Response:
    logger.warning(
        "database unavailable in %s %s [%s]: %s",
        request.method,
        request.url.path,
        request_id_of(request.scope),
        exc,
    )
    response = error_response(request.scope, 503, "database_unavailable", str(exc))
    response.headers["Retry-After"] = "1"
    return response


def exception_handlers() -> dict[Any, Any]:
    """Return the exception-handler mapping `create_app` installs."""
    return {
        ApiError: _api_error_handler,
        DatabaseUnavailable: _database_unavailable_handler,
        StorageError: _storage_error_handler,
        HTTPException: _http_exception_handler,
        Exception: _unhandled_handler,
    }


class RequestIdMiddleware:
    """Give each request a ``req-<hex>`` id (``request.state.request_id``) and echo it as ``X-Request-Id``.

    Args:
        app: The wrapped ASGI application.

    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the wrapped app with a request id in the scope state."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client hung up before sending its whole body: there is nobody to answer and nothing failed.
            logger.info("client went away during %s %s [%s]", scope.get("method"), scope.get("path"), rid)
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise
            # Answer here rather than in Starlette's outermost handler, which re-raises after responding and
            # would make the server log the same traceback a second time.
            logger.error(
                "unhandled error in %s %s [%s]", scope.get("method"), scope.get("path"), rid, exc_info=exc
            )
            await error_response(scope, 500, "internal_error", "internal server error")(scope, receive, send)
