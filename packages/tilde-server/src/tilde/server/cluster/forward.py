"""Forwarding between the nodes of a cluster: requests that must run where a sandbox lives.

A sandbox's live process belongs to one node. A request for it that reaches another replica (logs, finish,
cancel, the ``/exec`` websocket …) is authenticated and authorized there as usual, then sent on to the owner
by `forward_http` or `forward_websocket`, unchanged: method, path, query, the body streamed, and the client's
own ``Authorization``. The owner checks that request again by itself; the forwarder adds one header,
``X-Tilde-Forwarded``, that says which node forwarded it, for which client address, and signs that statement
with the cluster secret (HMAC-SHA256 over the node id, method, path and query, timestamp, client and request
id). `ForwardedMiddleware` verifies it on the receiving side: a forged or stale header is refused with 403
(never trusted, never ignored), and a verified one makes the request's client address and request id those of
the original request, so the owner's access log names the real client. A verified forwarded request is never
forwarded again (508): two nodes that disagree about an owner cannot bounce a request between them.

Placement: a replica that runs no sandboxes (``--no-sandboxes``) hands a create-sandbox request to the live
sandbox node running the fewest sandboxes (`place_sandbox`); the client gets that node's normal answer.

An owner that cannot be reached answers the client 503 with the contract's error body (``node_unavailable``).
Nothing here logs a request's headers: the client's token and the signature stay out of every log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, unquote

import httpx
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from tilde.server.api.common import read_small_body
from tilde.server.errors import ApiError, error_response, request_id_of

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = [
    "FORWARDED_HEADER",
    "MAX_SKEW",
    "ClusterView",
    "ForwardRefused",
    "ForwardedBy",
    "ForwardedMiddleware",
    "aclose",
    "forward_http",
    "forward_websocket",
    "forwarded_by",
    "install",
    "place_sandbox",
    "sign_forward",
    "verify_forward",
]

logger = logging.getLogger("tilde.server.cluster")

#: The internal header a forwarding node adds (lowercase, as ASGI headers are).
FORWARDED_HEADER = "x-tilde-forwarded"
#: How far a forwarded request's timestamp may lie from the receiver's clock (seconds, either way).
MAX_SKEW = 30.0
#: Connecting to another node must be quick; reading is not bounded (long polls, followed logs, exec).
CONNECT_TIMEOUT = 5.0
#: Largest create-sandbox body read before it is placed on another node (the owner checks it again).
MAX_PLACEMENT_BODY = 1024 * 1024

#: Headers that belong to one connection, never passed on (RFC 9110 §7.6.1), plus the ones the forwarder sets.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        FORWARDED_HEADER,
    }
)
#: Methods that change nothing on the owner, so a request that failed before any answer may be sent again.
_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS"})
#: Request headers this node's own server answers already (uvicorn sends 100 Continue itself).
_REQUEST_ONLY = frozenset({"expect"})
#: Response headers this node's server writes itself (they would be sent twice).
_RESPONSE_OWN = frozenset({"date", "server"})
#: Request headers of a websocket handshake that the forwarder's own handshake to the owner replaces.
_WS_HANDSHAKE = frozenset({"host", "content-length"})
#: Close codes that cannot be sent in a close frame, and the code a pipe sends in their place.
_UNSENDABLE_CLOSE = {1005: 1000, 1006: 1011, 1015: 1011}


class ClusterView(Protocol):
    """What forwarding needs of ``app.state.cluster`` (the node's `Cluster` object)."""

    node_id: str
    enabled: bool
    secret: bytes
    runs_sandboxes: bool

    def sandbox_nodes(self) -> list[tuple[str, str]]:
        """Return ``(node_id, base_url)`` of every live node that runs sandboxes."""
        ...


@dataclass(frozen=True)
class ForwardedBy:
    """A verified ``X-Tilde-Forwarded`` header.

    Attributes:
        node_id: The node that forwarded the request.
        client: The original client's ``(host, port)``, when it had one.
        request_id: The request id the forwarding node gave the request.

    """

    node_id: str
    client: tuple[str, int] | None
    request_id: str


class ForwardRefused(Exception):
    """An ``X-Tilde-Forwarded`` header that must not be trusted (malformed, forged or stale)."""


def _canonical(node_id: str, method: str, target: str, timestamp: str, client: str, request_id: str) -> bytes:
    return "\n".join(
        ("tilde-forward-v1", node_id, method.upper(), target, timestamp, client, request_id)
    ).encode()


def _mac(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign_forward(
    secret: bytes,
    node_id: str,
    method: str,
    target: str,
    *,
    client: tuple[str, int] | None = None,
    request_id: str = "",
    timestamp: float | None = None,
) -> str:
    """Return the ``X-Tilde-Forwarded`` value for a request this node forwards.

    Args:
        secret: The cluster secret every node shares.
        node_id: This (the forwarding) node's id.
        method: The request method (``GET`` for a websocket handshake).
        target: The decoded path, plus ``?`` and the raw query when there is one.
        client: The original client's address.
        request_id: The id this node gave the request (the owner adopts it).
        timestamp: Seconds since the epoch (now when omitted).

    """
    stamp = str(int((time.time() if timestamp is None else timestamp) * 1000))
    peer = f"{client[0]}:{client[1]}" if client else ""
    sig = _mac(secret, _canonical(node_id, method, target, stamp, peer, request_id))
    fields = (("node", node_id), ("ts", stamp), ("client", peer), ("rid", request_id), ("sig", sig))
    return ";".join(f"{name}={quote(value, safe='')}" for name, value in fields)


def verify_forward(
    secret: bytes, value: str, method: str, target: str, *, now: float | None = None
) -> ForwardedBy:
    """Check an ``X-Tilde-Forwarded`` value against the request it arrived with.

    Args:
        secret: The cluster secret.
        value: The header's value.
        method: The request's method.
        target: The request's decoded path, plus ``?`` and the raw query when there is one.
        now: The current time (seconds since the epoch; the clock when omitted).

    Returns:
        Who forwarded the request, and for which client.

    Raises:
        ForwardRefused: The header is malformed, its signature does not match this request, or it is stale.

    """
    fields: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, raw = part.strip().partition("=")
        if not sep or name in fields:
            raise ForwardRefused("malformed forwarding header")
        fields[name] = unquote(raw)
    try:
        node_id, stamp, peer, request_id, sig = (fields[k] for k in ("node", "ts", "client", "rid", "sig"))
    except KeyError:
        raise ForwardRefused("malformed forwarding header") from None
    if not node_id or not stamp.isdigit():
        raise ForwardRefused("malformed forwarding header")
    expected = _mac(secret, _canonical(node_id, method, target, stamp, peer, request_id))
    if not hmac.compare_digest(expected, sig):
        raise ForwardRefused("the forwarding header's signature does not match")
    current = time.time() if now is None else now
    if abs(current - int(stamp) / 1000) > MAX_SKEW:
        raise ForwardRefused("the forwarding header is stale")
    client: tuple[str, int] | None = None
    if peer:
        host, _, port = peer.rpartition(":")
        client = (host, int(port)) if host and port.isdigit() else None
    return ForwardedBy(node_id=node_id, client=client, request_id=request_id)


def _target(scope: Scope) -> str:
    """Return the signed request target: the decoded path, then ``?`` and the raw query if any."""
    query = scope.get("query_string", b"")
    path: str = scope.get("path", "")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _raw_target(scope: Scope) -> str:
    """Return the request target as the client sent it (what the owner is asked for)."""
    raw = scope.get("raw_path") or scope.get("path", "").encode()
    query = scope.get("query_string", b"")
    return (bytes(raw) + (b"?" + query if query else b"")).decode("latin-1")


def _cluster(app: Starlette) -> ClusterView | None:
    cluster: ClusterView | None = getattr(app.state, "cluster", None)
    return cluster if cluster is not None and cluster.enabled else None


class ForwardedMiddleware:
    """Verify ``X-Tilde-Forwarded`` before anything else sees the request (installed in cluster mode only).

    A request without the header passes untouched. A verified one carries `ForwardedBy` in
    ``scope["state"]["forwarded_by"]``, the original client as ``scope["client"]`` and the forwarding node's
    request id; anything else is refused with 403 (a websocket handshake is refused before it is accepted).

    Args:
        app: The wrapped ASGI application.
        cluster: The node's cluster object (its secret signs and verifies).

    """

    def __init__(self, app: ASGIApp, cluster: ClusterView) -> None:
        self.app = app
        self.cluster = cluster

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Verify the header when there is one, then call the wrapped app."""
        if scope["type"] in ("http", "websocket"):
            value = next((v for k, v in scope.get("headers", ()) if k == b"x-tilde-forwarded"), None)
            if value is not None:
                method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
                try:
                    forwarded = verify_forward(
                        self.cluster.secret, bytes(value).decode("latin-1"), method, _target(scope)
                    )
                except ForwardRefused as refused:
                    logger.warning(
                        "refused a forwarded %s %s from %s: %s",
                        method,
                        scope.get("path"),
                        _peer(scope),
                        refused,
                    )
                    if scope["type"] == "websocket":
                        await send({"type": "websocket.close", "code": 1008})
                        return
                    response = error_response(
                        scope, 403, "forbidden", f"forwarded request refused: {refused}"
                    )
                    await response(scope, receive, send)
                    return
                state = scope.setdefault("state", {})
                state["forwarded_by"] = forwarded
                if forwarded.request_id:
                    state["request_id"] = forwarded.request_id
                if forwarded.client is not None:
                    scope["client"] = forwarded.client
        await self.app(scope, receive, send)


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"


def forwarded_by(conn: HTTPConnection) -> ForwardedBy | None:
    """Return who forwarded this request to this node (verified), or None for a request from a client."""
    forwarded = conn.scope.get("state", {}).get("forwarded_by")
    return forwarded if isinstance(forwarded, ForwardedBy) else None


def install(app: Starlette) -> None:
    """Verify forwarded requests on a cluster node (nothing at all on a server that is not one)."""
    cluster = _cluster(app)
    if cluster is not None:
        app.add_middleware(ForwardedMiddleware, cluster=cluster)


async def aclose(app: Starlette) -> None:
    """Close the app's forwarding client, if it made one (at shutdown)."""
    client: httpx.AsyncClient | None = getattr(app.state, "forward_client", None)
    if client is not None:
        app.state.forward_client = None
        await client.aclose()


def _client(app: Starlette) -> httpx.AsyncClient:
    client: httpx.AsyncClient | None = getattr(app.state, "forward_client", None)
    if client is None:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT),
            # Long polls and followed logs hold a connection each: no cap that would make other requests wait.
            # Idle connections are let go well before a node's own keep-alive timeout (5 s) would close them.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32, keepalive_expiry=2.0),
            follow_redirects=False,  # a redirect (to presigned storage) is the client's to follow
            trust_env=False,  # nodes talk directly, never through a proxy from the environment
        )
        client.headers.clear()  # send the client's headers only, not httpx's defaults
        app.state.forward_client = client
    return client


def _signing(conn: HTTPConnection) -> tuple[ClusterView, str]:
    """Return the cluster and the request id, after the loop guard (no forwarding a forwarded request)."""
    cluster = _cluster(conn.app)
    if cluster is None:
        raise ApiError(503, "node_unavailable", "this server is not part of a cluster")
    forwarded = forwarded_by(conn)
    if forwarded is not None:
        raise ApiError(
            508,
            "forward_loop",
            f"node {cluster.node_id} was forwarded this request by node {forwarded.node_id} but does not own "
            "it either; try again",
        )
    return cluster, request_id_of(conn.scope)


def _request_headers(
    conn: HTTPConnection, cluster: ClusterView, request_id: str, skip: Iterable[str]
) -> list[tuple[bytes, bytes]]:
    scope = conn.scope
    named = {
        token.strip().lower()
        for name, value in scope.get("headers", ())
        if name == b"connection"
        for token in bytes(value).decode("latin-1").split(",")
    }
    drop = _HOP_BY_HOP | _REQUEST_ONLY | named | set(skip)
    headers = [(bytes(k), bytes(v)) for k, v in scope.get("headers", ()) if k.decode("latin-1") not in drop]
    method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
    client = scope.get("client")
    signed = sign_forward(
        cluster.secret,
        cluster.node_id,
        method,
        _target(scope),
        client=(str(client[0]), int(client[1])) if client else None,
        request_id=request_id,
    )
    headers.append((FORWARDED_HEADER.encode(), signed.encode()))
    return headers


class _Unreachable(Exception):
    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent  # whether any of the request may have reached the node


async def _send(request: Request, base_url: str, content: bytes | AsyncIterator[bytes] | None) -> Response:
    cluster, request_id = _signing(request)
    headers = _request_headers(request, cluster, request_id, ())
    client = _client(request.app)
    url = httpx.URL(base_url.rstrip("/")).copy_with(raw_path=_raw_target(request.scope).encode("latin-1"))
    # A kept-alive connection can be closed by the owner (idle, or displaced under load) just as it is reused:
    # a request that changes nothing and has no body is sent once more, on a new connection.
    attempts = 2 if content is None and request.method in _RETRYABLE else 1
    for attempt in range(attempts):
        outgoing = client.build_request(request.method, url, headers=headers, content=content)
        try:
            upstream = await client.send(outgoing, stream=True)
            break
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Unreachable(type(exc).__name__, sent=attempt > 0) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            if attempt + 1 < attempts:
                logger.info(
                    "forwarding %s %s to %s: %s, retrying",
                    request.method,
                    request.url.path,
                    base_url,
                    type(exc).__name__,
                )
                continue
            raise _Unreachable(type(exc).__name__, sent=True) from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise _Unreachable(type(exc).__name__, sent=True) from None
    else:  # pragma: no cover - every attempt either breaks or raises
        raise _Unreachable("no attempt made", sent=False)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.TransportError as exc:
            # The status is already sent: all that can be done is to end the body early.
            logger.warning(
                "forwarded %s %s: node %s went away mid-response (%s)",
                request.method,
                request.url.path,
                base_url,
                type(exc).__name__,
            )
        finally:
            await upstream.aclose()

    response = StreamingResponse(body(), status_code=upstream.status_code)
    named = {t.strip().lower() for t in upstream.headers.get("connection", "").split(",")}
    response.raw_headers = [
        (k, v)
        for k, v in upstream.headers.raw
        if (name := k.decode("latin-1").lower()) not in _HOP_BY_HOP
        and name not in _RESPONSE_OWN
        and name not in named
    ]
    return response


def _unavailable(node: str, reason: str) -> ApiError:
    return ApiError(
        503,
        "node_unavailable",
        f"the node that must serve this request ({node}) cannot be reached: {reason}",
        {"Retry-After": "1"},
    )


async def forward_http(request: Request, base_url: str) -> Response:
    """Send ``request`` to the node at ``base_url`` and return its answer, both bodies streamed.

    The status and the end-to-end headers come back as the owner sent them (a redirect too: it is the
    client's to follow); hop-by-hop headers are dropped both ways.

    Args:
        request: The client's request, already authorized on this node (its body not yet read, or cached).
        base_url: The owning node's base URL (``Cluster.node_url``).

    Raises:
        ApiError: 503 ``node_unavailable`` when the node cannot be reached or fails before answering; 508
            ``forward_loop`` when the request was itself forwarded to this node.

    """
    content: AsyncIterator[bytes] | None = None
    if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
        content = request.stream()
    try:
        return await _send(request, base_url, content)
    except _Unreachable as exc:
        logger.warning(
            "forwarding %s %s to %s failed: %s", request.method, request.url.path, base_url, exc.reason
        )
        raise _unavailable(base_url, exc.reason) from None


def _pick(nodes: Sequence[tuple[str, str]], own: str, busy: Mapping[str, int]) -> list[tuple[str, str]]:
    """Order the sandbox nodes to try: the least busy first, ties in random order."""
    others = [node for node in nodes if node[0] != own]
    random.shuffle(others)
    return sorted(others, key=lambda node: busy.get(node[0], 0))


def _busy(app: Starlette) -> dict[str, int]:
    """Return how many sandboxes each node runs (empty when unknown: placement is random then)."""
    shared = getattr(getattr(app.state, "runtime", None), "shared", None)
    if shared is None:
        return {}
    try:
        busy: dict[str, int] = shared.active_by_node()
    except Exception:
        logger.warning("could not count the nodes' sandboxes; placing at random", exc_info=True)
        return {}
    return busy


async def place_sandbox(request: Request) -> Response | None:
    """Create the sandbox on a live sandbox node when this replica runs none (None: create it here).

    The node running the fewest sandboxes is tried first (ties broken at random). The body is read first (it
    is small), so a node that cannot be reached at all is skipped for the next.

    Args:
        request: The authorized create-sandbox request.

    Raises:
        ApiError: 503 ``no_sandbox_node`` when no live node runs sandboxes, or ``node_unavailable`` when none
            of them could be reached; 508 for a request another node already forwarded here.

    """
    cluster = _cluster(request.app)
    if cluster is None or cluster.runs_sandboxes:
        return None
    _signing(request)  # the loop guard, before anything is read
    body = await read_small_body(request, MAX_PLACEMENT_BODY)
    nodes = await asyncio.to_thread(cluster.sandbox_nodes)
    candidates = _pick(nodes, cluster.node_id, await asyncio.to_thread(_busy, request.app) if nodes else {})
    if not candidates:
        raise ApiError(
            503,
            "no_sandbox_node",
            "no node of the cluster that runs sandboxes is alive",
            {"Retry-After": "1"},
        )
    failure = ""
    for node_id, url in candidates:
        try:
            return await _send(request, url, body)
        except _Unreachable as exc:
            logger.warning("placing a sandbox on node %s failed: %s", node_id, exc.reason)
            failure = exc.reason
            if exc.sent:
                break  # the node may have created it: do not create a second one elsewhere
    raise _unavailable("a sandbox node", failure)


def _ws_url(base_url: str, scope: Scope) -> str:
    url = base_url.rstrip("/")
    if url.startswith("https://"):
        url = "wss://" + url[len("https://") :]
    elif url.startswith("http://"):
        url = "ws://" + url[len("http://") :]
    return url + _raw_target(scope)


async def _deny(websocket: WebSocket, status: int, code: str, message: str) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(websocket.scope, status, code, message))
    else:
        await websocket.close(code=1008)


async def forward_websocket(websocket: WebSocket, base_url: str) -> None:
    """Pipe a websocket (not yet accepted) to the same path on the node at ``base_url``.

    The client's handshake is accepted only once the owner accepted (with the subprotocol the owner chose);
    a refusal by the owner is passed on with the owner's status, an unreachable owner is refused with 503.
    Then text and binary messages flow both ways until either side closes; the close code travels along.

    Args:
        websocket: The client's websocket, authorized on this node and not accepted.
        base_url: The owning node's base URL (``Cluster.node_url``).

    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

    try:
        cluster, request_id = _signing(websocket)
    except ApiError as error:
        await _deny(websocket, error.status, error.code, error.message)
        return
    skip = {name for name, _ in websocket.scope.get("headers", ()) if name.startswith(b"sec-websocket-")}
    headers = _request_headers(websocket, cluster, request_id, {*_WS_HANDSHAKE, *(n.decode() for n in skip)})
    subprotocols = websocket.scope.get("subprotocols") or None
    try:
        owner: ClientConnection = await connect(
            _ws_url(base_url, websocket.scope),
            additional_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
            subprotocols=subprotocols,
            open_timeout=CONNECT_TIMEOUT,
            ping_interval=None,  # an idle exec is still running: never drop it for a missed ping
            max_size=None,  # the owner is trusted; the client's side keeps the server's own limit
            compression=None,
            proxy=None,
        )
    except InvalidStatus as refused:
        status = refused.response.status_code
        await _deny(
            websocket, status, "forwarded_refusal", f"the owning node refused the websocket ({status})"
        )
        return
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        logger.warning(
            "forwarding websocket %s to %s failed: %s", websocket.url.path, base_url, type(exc).__name__
        )
        down = _unavailable(base_url, type(exc).__name__)
        await _deny(websocket, down.status, down.code, down.message)
        return
    try:
        await websocket.accept(subprotocol=owner.subprotocol)
        await _pipe(websocket, owner, ConnectionClosed)
    finally:
        await owner.close()  # also when the client left before its handshake could be accepted


async def _pipe(websocket: WebSocket, owner: ClientConnection, closed: type[Exception]) -> None:
    async def upstream() -> None:
        code = 1000
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    code = int(message.get("code") or 1000)
                    break
                if message.get("bytes") is not None:
                    await owner.send(message["bytes"])
                elif message.get("text") is not None:
                    await owner.send(message["text"])
        except (closed, WebSocketDisconnect, RuntimeError):
            pass
        with contextlib.suppress(Exception):  # a code no close frame may carry: close without one
            await owner.close(code=_UNSENDABLE_CLOSE.get(code, code))

    async def downstream() -> None:
        with contextlib.suppress(closed):
            async for message in owner:
                if isinstance(message, str):
                    await websocket.send_text(message)
                else:
                    await websocket.send_bytes(message)
        received = owner.close_code or 1000
        with contextlib.suppress(Exception):
            await websocket.close(
                code=_UNSENDABLE_CLOSE.get(received, received), reason=owner.close_reason or ""
            )

    up = asyncio.ensure_future(upstream())
    down = asyncio.ensure_future(downstream())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down not in done:
            # The client left: the owner's close handshake ends the other direction soon.
            await asyncio.wait({down}, timeout=CONNECT_TIMEOUT)
    finally:
        # Also when this handler is cancelled (the server stopping): neither direction outlives the pipe.
        up.cancel()
        down.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        await owner.close()
