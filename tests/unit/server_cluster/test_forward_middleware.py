"""`ForwardedMiddleware`: a verified request carries the original client and request id; others get 403."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tilde.server.cluster.forward import FORWARDED_HEADER, ForwardedBy, ForwardedMiddleware, sign_forward

SECRET = b"k" * 32
PATH = "/api/v1/organizations/o/repositories/r/sandboxes/sbx-1/finish"


class _Node:
    node_id = "owner"
    enabled = True
    secret = SECRET
    runs_sandboxes = True

    def sandbox_nodes(self) -> list[tuple[str, str]]:
        return []


def _call(
    scope_type: str, header: str | None, method: str = "POST"
) -> tuple[dict[str, Any] | None, list[Any]]:
    """Run the middleware once; return the scope the inner app saw (None: not called) and what was sent."""
    seen: dict[str, Any] = {}
    sent: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    headers = [(b"authorization", b"Bearer tuk-client")]
    if header is not None:
        headers.append((FORWARDED_HEADER.encode(), header.encode()))
    scope: dict[str, Any] = {
        "type": scope_type,
        "method": method,
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("10.0.0.2", 40000),  # the forwarding node's address
    }
    asyncio.run(ForwardedMiddleware(inner, cluster=_Node())(scope, receive, send))
    return (seen or None), sent


def test_a_request_without_the_header_passes_untouched() -> None:
    seen, sent = _call("http", None)

    assert seen is not None
    assert seen["client"] == ("10.0.0.2", 40000)
    assert "forwarded_by" not in seen.get("state", {})
    assert sent == []


def test_a_verified_request_carries_the_original_client_and_request_id() -> None:
    header = sign_forward(
        SECRET, "api-1", "POST", PATH, client=("198.51.100.9", 61000), request_id="req-00000000000000cd"
    )

    seen, _ = _call("http", header)

    assert seen is not None
    assert seen["client"] == ("198.51.100.9", 61000)  # what the access log prints
    assert seen["state"]["request_id"] == "req-00000000000000cd"
    assert seen["state"]["forwarded_by"] == ForwardedBy(
        node_id="api-1", client=("198.51.100.9", 61000), request_id="req-00000000000000cd"
    )


def test_a_forged_header_is_answered_403_with_the_error_body() -> None:
    header = sign_forward(b"x" * 32, "api-1", "POST", PATH)

    seen, sent = _call("http", header)

    assert seen is None
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 403
    body = json.loads(sent[1]["body"])
    assert body["code"] == "forbidden"
    assert set(body) == {"message", "code", "request_id"}
    assert header.rsplit("sig=", 1)[1] not in sent[1]["body"].decode()


def test_a_header_signed_for_another_method_is_refused() -> None:
    header = sign_forward(SECRET, "api-1", "GET", PATH)

    seen, sent = _call("http", header, method="POST")

    assert seen is None
    assert sent[0]["status"] == 403


def test_a_forged_header_on_a_websocket_handshake_is_refused_before_accepting() -> None:
    header = sign_forward(b"x" * 32, "api-1", "GET", PATH)

    seen, sent = _call("websocket", header)

    assert seen is None
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_a_websocket_handshake_is_signed_as_a_get() -> None:
    header = sign_forward(SECRET, "api-1", "GET", PATH, client=("198.51.100.9", 1))

    seen, _ = _call("websocket", header)

    assert seen is not None
    assert seen["client"] == ("198.51.100.9", 1)
