"""Forwarding between cluster nodes: signed internal requests, streamed bodies, the exec websocket, placement.

Two real servers share one fresh PostgreSQL database (and so one cluster) and one bucket of blobs: ``owner``
runs sandboxes, ``api`` is an API-only replica (``sandboxes=False``). A create-sandbox request sent to ``api``
must run on ``owner``.
The forwarder itself is also driven from a minimal relay application served over real HTTP in front of
``owner``, which forwards every request and websocket it gets; ``owner`` verifies each one as it would a
replica's. All requests go over real sockets; sandboxes are real.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from pg_server import PostgresServer
from replica_pair import shared_bucket
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from weed_s3 import S3Server

from tilde.server import LocalServer, ServerConfig
from tilde.server.cluster import CLUSTER_SCHEMA
from tilde.server.cluster import forward as cluster_forward
from tilde.server.cluster.forward import (
    FORWARDED_HEADER,
    ForwardedMiddleware,
    forward_http,
    forward_websocket,
    forwarded_by,
    sign_forward,
)
from tilde.server.crypto import MASTER_KEY_ENV, encode_key
from tilde.server.errors import exception_handlers

pytestmark = [pytest.mark.sandbox]

LAUNCH, STDIN, STDIN_CLOSE, STDOUT, STDERR, EXIT = range(6)
IMAGE = "ubuntu:22.04"


@pytest.fixture(scope="module")
def shared_master_key() -> Iterator[None]:
    """Every node of a cluster holds the same master key."""
    previous = os.environ.get(MASTER_KEY_ENV)
    os.environ[MASTER_KEY_ENV] = encode_key(os.urandom(32))
    yield
    if previous is None:
        os.environ.pop(MASTER_KEY_ENV, None)
    else:
        os.environ[MASTER_KEY_ENV] = previous


def _node(
    tmp: pytest.TempPathFactory,
    database_url: str,
    name: str,
    admin_key: str | None,
    *,
    sandboxes: bool,
    blobs: dict[str, Any] | None = None,
) -> LocalServer:
    """Start a node; the nodes of one cluster share ``blobs`` (`replica_pair.shared_bucket`)."""
    config = ServerConfig(
        data_dir=tmp.mktemp(name),
        database_url=database_url,
        node_id=f"{name}-{uuid.uuid4().hex[:6]}",
        sandboxes=sandboxes,
        **(blobs or {}),
    )
    return LocalServer(config=config, admin_key=admin_key).start()


@dataclass
class Pair:
    owner: LocalServer
    api: LocalServer
    database_url: str


@pytest.fixture(scope="module")
def pair(
    postgres_server: PostgresServer,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
    shared_master_key: None,
) -> Iterator[Pair]:
    """A sandbox node and an API-only replica of one cluster."""
    database_url, blobs = postgres_server.new_database(), shared_bucket(s3_server)
    owner = _node(tmp_path_factory, database_url, "owner", None, sandboxes=True, blobs=blobs)
    try:
        api = _node(tmp_path_factory, database_url, "api", owner.api_key, sandboxes=False, blobs=blobs)
        try:
            yield Pair(owner, api, database_url)
        finally:
            api.stop()
    finally:
        owner.stop()


def _relay_app(target: str, secret: bytes) -> Starlette:
    """An application that forwards every request and websocket to ``target`` (a node of its cluster)."""

    async def http(request: Request) -> Response:
        return await forward_http(request, target)

    async def websocket(ws: WebSocket) -> None:
        await forward_websocket(ws, target)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await cluster_forward.aclose(app)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(
        routes=[Route("/{path:path}", http, methods=methods), WebSocketRoute("/{path:path}", websocket)],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.cluster = _node_of(secret, "relay")
    return app


def _node_of(secret: bytes, node_id: str) -> Any:
    """The attributes of a cluster node that forwarding uses."""
    return type(
        "Node", (), {"node_id": node_id, "enabled": True, "secret": secret, "runs_sandboxes": False}
    )()


@contextmanager
def _serving(app: Starlette, *, access_log: bool = False) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields its base URL.

    With ``access_log``, uvicorn's access lines go to the ``uvicorn.access`` logger (and pytest's capture).
    """
    # IPPROTO_TCP named: asyncio turns Nagle off only on sockets that say TCP (40 ms stalls otherwise).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    logging_options: dict[str, Any] = (
        {"log_config": None, "log_level": "info", "access_log": True}
        if access_log
        else {"log_level": "warning", "access_log": False}
    )
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", **logging_options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server failed to start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def relay(pair: Pair) -> Iterator[str]:
    """The base URL of a relay forwarding to ``pair.owner`` over real HTTP."""
    with _serving(_relay_app(pair.owner.endpoint_url, pair.owner.app.state.cluster.secret)) as url:
        yield url


def _client(base_url: str, api_key: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url + "/api/v1", headers={"Authorization": f"Bearer {api_key}"}, timeout=120
    )


@pytest.fixture(scope="module")
def repo_base(pair: Pair) -> str:
    """A fresh repository of the cluster (made through the owner), as an API path."""
    org, repo = f"org-{uuid.uuid4().hex[:8]}", f"repo-{uuid.uuid4().hex[:8]}"
    with _client(pair.owner.endpoint_url, pair.owner.api_key) as api:
        assert api.post("/organizations", json={"name": org}).status_code == 201
        created = api.post(f"/organizations/{org}/repositories", json={"name": repo})
        assert created.status_code == 201, created.text
    return f"/organizations/{org}/repositories/{repo}/sandboxes"


def _wait(api: httpx.Client, url: str, *, while_: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        params: dict[str, Any] = {"wait": 30, **({"while": while_} if while_ else {})}
        response = api.get(f"{url}/status", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if (body["status"] != while_) if while_ else body["status"] not in ("starting", "running"):
            return body
        assert time.monotonic() < deadline, body


def test_an_api_only_replica_has_a_sandbox_node_run_the_sandbox(pair: Pair, repo_base: str) -> None:
    with _client(pair.api.endpoint_url, pair.api.api_key) as via_api:
        created = via_api.post(repo_base, json={"image": IMAGE, "command": ["sh", "-c", "echo placed"]})
    assert created.status_code == 201, created.text
    sandbox_id = created.json()["sandbox_id"]

    # The owner holds the live sandbox: its own routes answer from its memory, and it ran the command.
    with _client(pair.owner.endpoint_url, pair.owner.api_key) as on_owner:
        status = _wait(on_owner, f"{repo_base}/{sandbox_id}")
        logs = on_owner.get(f"{repo_base}/{sandbox_id}/logs/stdout")
    assert status["status"] == "done", status
    assert logs.text == "placed\n"
    with _client(pair.api.endpoint_url, pair.api.api_key) as via_api:
        forwarded = via_api.get(f"{repo_base}/{sandbox_id}/logs/stdout")
    assert forwarded.status_code == 200, forwarded.text
    assert forwarded.text == "placed\n"


def test_a_sandbox_lives_its_whole_life_through_an_api_only_replica(pair: Pair, repo_base: str) -> None:
    """Created (placed), exec'd (websocket piped), finished and its log read, all through ``api``."""
    payload = os.urandom(2 * 1024 * 1024)
    with _client(pair.api.endpoint_url, pair.api.api_key) as via_api:
        created = via_api.post(repo_base, json={"image": IMAGE, "mode": "service"})
        assert created.status_code == 201, created.text
        url = f"{repo_base}/{created.json()['sandbox_id']}"
        try:
            assert _wait(via_api, url, while_="starting")["status"] == "running"
            ws_url = pair.api.endpoint_url.replace("http://", "ws://") + f"/api/v1{url}/exec"
            echoed, exit_body = _exec(ws_url, pair.api.api_key, ["cat"], payload)
            finished = via_api.post(f"{url}/finish", json={"message": "finished through the api replica"})
            status = _wait(via_api, url)
            logs = via_api.get(f"{url}/logs/stdout")
        finally:
            via_api.delete(url)

    assert exit_body["exit_code"] == 0, exit_body
    assert echoed == payload
    assert finished.status_code == 202, finished.text
    assert status["status"] == "done", status
    assert logs.status_code == 200, logs.text
    assert logs.headers["content-type"].startswith("text/plain")


def test_a_forged_forwarding_header_is_refused(pair: Pair, repo_base: str) -> None:
    forged = sign_forward(b"not-the-cluster-secret-000000000", "intruder", "GET", f"/api/v1{repo_base}")
    with _client(pair.owner.endpoint_url, pair.owner.api_key) as api:
        refused = api.get(repo_base, headers={FORWARDED_HEADER: forged})
        plain = api.get(repo_base)

    assert plain.status_code == 200, plain.text
    assert refused.status_code == 403, refused.text
    body = refused.json()
    assert body["code"] == "forbidden"
    assert set(body) == {"message", "code", "request_id"}
    assert forged.rsplit("sig=", 1)[1] not in refused.text


def test_a_forwarding_header_signed_for_another_path_is_refused(pair: Pair, repo_base: str) -> None:
    secret = pair.owner.app.state.cluster.secret
    elsewhere = sign_forward(secret, "api", "GET", "/api/v1/organizations")
    exact = sign_forward(secret, "api", "GET", f"/api/v1{repo_base}")
    with _client(pair.owner.endpoint_url, pair.owner.api_key) as api:
        replayed = api.get(repo_base, headers={FORWARDED_HEADER: elsewhere})
        genuine = api.get(repo_base, headers={FORWARDED_HEADER: exact})

    assert replayed.status_code == 403, replayed.text
    assert genuine.status_code == 200, genuine.text


def test_a_forwarded_request_is_not_forwarded_again(pair: Pair, repo_base: str) -> None:
    # A request the owner says was forwarded to the API-only replica must not be placed on yet another node.
    secret = pair.owner.app.state.cluster.secret
    header = sign_forward(secret, "owner", "POST", f"/api/v1{repo_base}")
    with _client(pair.api.endpoint_url, pair.api.api_key) as api:
        looped = api.post(repo_base, json={"image": IMAGE}, headers={FORWARDED_HEADER: header})

    assert looped.status_code == 508, looped.text
    assert looped.json()["code"] == "forward_loop"


def test_a_forwarded_log_stream_and_status_arrive_whole(pair: Pair, repo_base: str, relay: str) -> None:
    command = ["sh", "-c", "seq 1 200000"]
    with (
        _client(relay, pair.owner.api_key) as via_relay,
        _client(pair.owner.endpoint_url, pair.owner.api_key) as direct,
    ):
        created = via_relay.post(repo_base, json={"image": IMAGE, "command": command})
        assert created.status_code == 201, created.text
        url = f"{repo_base}/{created.json()['sandbox_id']}"
        status = _wait(via_relay, url)
        with via_relay.stream("GET", f"{url}/logs/stdout") as streamed:
            chunks = list(streamed.iter_raw())
            forwarded_headers = streamed.headers
        expected = direct.get(f"{url}/logs/stdout").content

    assert status["status"] == "done", status
    assert b"".join(chunks) == expected == "".join(f"{i}\n" for i in range(1, 200001)).encode()
    assert forwarded_headers["content-type"].startswith("text/plain")
    assert "x-request-id" in forwarded_headers


def test_a_streamed_request_body_is_forwarded(pair: Pair, repo_base: str, relay: str) -> None:
    def chunked_body() -> Iterator[bytes]:
        yield b'{"message": '
        yield json.dumps("finished through " + "the relay " * 300).encode()
        yield b"}"

    with _client(relay, pair.owner.api_key) as via_relay:
        created = via_relay.post(repo_base, json={"image": IMAGE, "mode": "service"})
        assert created.status_code == 201, created.text
        url = f"{repo_base}/{created.json()['sandbox_id']}"
        assert _wait(via_relay, url, while_="starting")["status"] == "running"
        finished = via_relay.post(f"{url}/finish", content=chunked_body())
        status = _wait(via_relay, url)

    assert finished.status_code == 202, finished.text
    assert status["status"] == "done", status


def _exec(url: str, api_key: str, cmd: list[str], stdin: bytes) -> tuple[bytes, dict[str, Any]]:
    out = bytearray()
    with connect(url, additional_headers={"Authorization": f"Bearer {api_key}"}, open_timeout=30) as ws:
        ws.send(bytes([LAUNCH]) + json.dumps({"cmd": cmd}).encode())
        ws.send(bytes([STDIN]) + stdin)
        ws.send(bytes([STDIN_CLOSE]))
        while True:
            message = ws.recv(timeout=120)
            assert isinstance(message, bytes)
            if message[0] == STDOUT:
                out += message[1:]
            elif message[0] == EXIT:
                return bytes(out), json.loads(message[1:])


def test_the_exec_websocket_is_piped_through_the_forwarder(pair: Pair, repo_base: str, relay: str) -> None:
    payload = os.urandom(3 * 1024 * 1024)  # more than one message each way
    with _client(relay, pair.owner.api_key) as via_relay:
        created = via_relay.post(repo_base, json={"image": IMAGE, "mode": "service"})
        assert created.status_code == 201, created.text
        url = f"{repo_base}/{created.json()['sandbox_id']}"
        try:
            assert _wait(via_relay, url, while_="starting")["status"] == "running"
            ws_url = relay.replace("http://", "ws://") + f"/api/v1{url}/exec"
            echoed, exit_body = _exec(ws_url, pair.owner.api_key, ["cat"], payload)
        finally:
            via_relay.delete(url)

    assert exit_body["exit_code"] == 0, exit_body
    assert echoed == payload


def test_a_client_leaving_a_piped_exec_ends_the_command_on_the_owner(
    pair: Pair, repo_base: str, relay: str
) -> None:
    headers = {"Authorization": f"Bearer {pair.owner.api_key}"}
    with _client(relay, pair.owner.api_key) as via_relay:
        created = via_relay.post(repo_base, json={"image": IMAGE, "mode": "service"})
        assert created.status_code == 201, created.text
        url = f"{repo_base}/{created.json()['sandbox_id']}"
        ws_url = relay.replace("http://", "ws://") + f"/api/v1{url}/exec"
        try:
            assert _wait(via_relay, url, while_="starting")["status"] == "running"
            with connect(ws_url, additional_headers=headers, open_timeout=30) as ws:
                ws.send(
                    bytes([LAUNCH]) + json.dumps({"cmd": ["sh", "-c", "echo $$; exec sleep 300"]}).encode()
                )
                first = ws.recv(timeout=60)
                assert isinstance(first, bytes)
                assert first[0] == STDOUT
                pid = int(first[1:].strip())
            # The client is gone; the forwarder closes the owner's side, and the owner kills the command.
            probe = ["sh", "-c", f"kill -0 {pid} 2>/dev/null && echo running || echo ended"]
            deadline = time.monotonic() + 60
            while True:
                state, _ = _exec(ws_url, pair.owner.api_key, probe, b"")
                if state.strip() == b"ended" or time.monotonic() > deadline:
                    break
        finally:
            via_relay.delete(url)

    assert state.strip() == b"ended"


def test_a_websocket_the_owner_refuses_is_refused_with_its_status(
    pair: Pair, repo_base: str, relay: str
) -> None:
    ws_url = relay.replace("http://", "ws://") + f"/api/v1{repo_base}/sbx-doesnotexist/exec"
    with pytest.raises(InvalidStatus) as refused:
        _exec(ws_url, pair.owner.api_key, ["true"], b"")

    assert refused.value.response.status_code == 404


def _closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def test_an_unreachable_owner_gives_503_with_the_error_body_and_logs_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "tuk-" + "7" * 40
    dead = f"http://127.0.0.1:{_closed_port()}"
    with _serving(_relay_app(dead, ECHO_SECRET)) as relay_url:
        response = httpx.get(
            f"{relay_url}/api/v1/organizations/o/repositories/r/sandboxes/s/logs/stdout",
            headers={"Authorization": f"Bearer {token}"},
        )

    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "node_unavailable"
    assert set(body) == {"message", "code", "request_id"}
    assert response.headers["retry-after"] == "1"
    assert "forwarding GET /api/v1/organizations/o/repositories/r/sandboxes/s/logs/stdout" in caplog.text
    assert token not in caplog.text
    assert "sig=" not in caplog.text


def test_placement_without_a_live_sandbox_node_is_503(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory, shared_master_key: None
) -> None:
    database_url = postgres_server.new_database()
    alone = _node(tmp_path_factory, database_url, "alone", None, sandboxes=False)
    try:
        org, repo = f"org-{uuid.uuid4().hex[:8]}", f"repo-{uuid.uuid4().hex[:8]}"
        with _client(alone.endpoint_url, alone.api_key) as api:
            assert api.post("/organizations", json={"name": org}).status_code == 201
            assert api.post(f"/organizations/{org}/repositories", json={"name": repo}).status_code == 201
            sandboxes = f"/organizations/{org}/repositories/{repo}/sandboxes"
            nobody = api.post(sandboxes, json={"image": IMAGE})
            # A node whose lease is live but which cannot be reached: the client hears 503, not a hang.
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    f"INSERT INTO {CLUSTER_SCHEMA}.cluster_nodes"
                    " (node_id, url, sandboxes, started_us, lease_until_us) VALUES (%s, %s, 1, 0, %s)",
                    ("ghost", f"http://127.0.0.1:{_closed_port()}", (time.time() + 3600) * 1_000_000),
                )
            deadline = time.monotonic() + 30
            while True:  # the replica reuses its look-up of the live nodes for a moment
                unreachable = api.post(sandboxes, json={"image": IMAGE})
                if unreachable.json().get("code") != "no_sandbox_node" or time.monotonic() > deadline:
                    break
    finally:
        alone.stop()

    assert nobody.status_code == 503, nobody.text
    assert nobody.json()["code"] == "no_sandbox_node"
    assert unreachable.status_code == 503, unreachable.text
    assert unreachable.json()["code"] == "node_unavailable"
    assert set(unreachable.json()) == {"message", "code", "request_id"}


ECHO_SECRET = b"e" * 32


def _echo_app() -> Starlette:
    """A node that answers with what reached it: headers, client, request id and a digest of the body."""

    async def http(request: Request) -> Response:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        forwarded = forwarded_by(request)
        body = {
            "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]],
            "client": list(request.scope["client"]),
            "request_id": request.scope.get("state", {}).get("request_id"),
            "forwarded_by": forwarded.node_id if forwarded else None,
            "sha256": digest.hexdigest(),
            "size": size,
        }
        return Response(
            json.dumps(body),
            media_type="application/json",
            headers={
                "X-Owner": "yes",
                "Keep-Alive": "timeout=5",
                "Connection": "x-owner-hop",
                "X-Owner-Hop": "1",
            },
        )

    async def echo(ws: WebSocket) -> None:
        await ws.accept(subprotocol=(ws.scope.get("subprotocols") or [None])[0])
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "headers?":
                await ws.send_text(json.dumps([[k.decode(), v.decode()] for k, v in ws.scope["headers"]]))
                continue
            if message.get("text") == "close please":
                await ws.close(code=4001, reason="asked to")
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"].upper())
            elif message.get("bytes") is not None:
                await ws.send_bytes(message["bytes"][::-1])

    app = Starlette(
        routes=[
            Route("/{path:path}", http, methods=["GET", "POST", "PUT"]),
            WebSocketRoute("/{path:path}", echo),
        ]
    )
    app.add_middleware(ForwardedMiddleware, cluster=_node_of(ECHO_SECRET, "echo"))
    return app


@pytest.fixture(scope="module")
def echo_relay() -> Iterator[str]:
    """A relay in front of an echoing node (same cluster secret), both over real HTTP."""
    with _serving(_echo_app(), access_log=True) as echo, _serving(_relay_app(echo, ECHO_SECRET)) as relay_url:
        yield relay_url


def test_end_to_end_headers_pass_and_hop_by_hop_ones_do_not(echo_relay: str) -> None:
    headers = {
        "Authorization": "Bearer tuk-the-clients-own",
        "X-Custom": "kept",
        "Connection": "x-client-hop",
        "X-Client-Hop": "dropped",
        "Proxy-Authorization": "Basic dropped",
        FORWARDED_HEADER: "node=x;ts=1;client=;rid=;sig=00",  # the client's own attempt is never passed on
    }
    response = httpx.get(f"{echo_relay}/api/v1/anything?a=1&b=%2F", headers=headers)

    assert response.status_code == 200, response.text
    seen = response.json()
    received = {name: value for name, value in seen["headers"]}
    assert received["authorization"] == "Bearer tuk-the-clients-own"
    assert received["x-custom"] == "kept"
    assert "x-client-hop" not in received
    assert "proxy-authorization" not in received
    assert seen["forwarded_by"] == "relay"  # the header the owner verified is the relay's, not the client's
    assert [name for name, _ in seen["headers"]].count(FORWARDED_HEADER) == 1
    assert seen["client"][0] == "127.0.0.1"
    assert seen["request_id"].startswith("req-")  # the relay's id for the request, adopted by the owner
    assert response.headers["x-owner"] == "yes"
    assert "x-owner-hop" not in response.headers
    assert "keep-alive" not in response.headers
    assert len(response.headers.get_list("date")) == 1
    assert len(response.headers.get_list("server")) <= 1


def test_a_chunked_request_body_arrives_whole(echo_relay: str) -> None:
    block = os.urandom(1024 * 1024)
    blocks = 24

    def body() -> Iterator[bytes]:
        for _ in range(blocks):
            yield block

    response = httpx.post(f"{echo_relay}/api/v1/upload", content=body(), timeout=120)

    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["size"] == blocks * len(block)
    assert seen["sha256"] == hashlib.sha256(block * blocks).hexdigest()
    received = dict(seen["headers"])
    assert received.get("transfer-encoding") == "chunked"  # streamed on, not gathered to a known length
    assert "content-length" not in received


def test_websocket_messages_and_the_close_code_travel_both_ways(echo_relay: str) -> None:
    url = echo_relay.replace("http://", "ws://") + "/api/v1/echo"
    sent_headers = {"Authorization": "Bearer tuk-the-clients-own", "X-Custom": "kept"}
    with connect(
        url,
        subprotocols=["tilde.v1"],  # type: ignore[list-item]
        additional_headers=sent_headers,
        user_agent_header="client-agent/1",
        open_timeout=30,
    ) as ws:
        assert ws.subprotocol == "tilde.v1"
        ws.send("headers?")
        received = json.loads(ws.recv(timeout=30))
        ws.send("hello")
        assert ws.recv(timeout=30) == "HELLO"
        ws.send(b"\x00\x01\x02")
        assert ws.recv(timeout=30) == b"\x02\x01\x00"
        ws.send("close please")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
        assert ws.close_code == 4001
        assert ws.close_reason == "asked to"
    names = [name for name, _ in received]
    assert ("user-agent", "client-agent/1") in [tuple(pair) for pair in received]
    assert names.count("user-agent") == 1
    assert names.count("sec-websocket-key") == 1
    assert ("x-custom", "kept") in [tuple(pair) for pair in received]
    assert ("authorization", "Bearer tuk-the-clients-own") in [tuple(pair) for pair in received]
    assert names.count(FORWARDED_HEADER) == 1


@contextmanager
def _flaky_node() -> Iterator[tuple[str, list[bytes]]]:
    """A node whose first connection is closed after the request arrives, unanswered; later ones get 200."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    heads: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        break
                    head += data
                heads.append(head.split(b"\r\n", 1)[0])
                if len(heads) > 1:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", heads
    finally:
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (closing alone does not)
        listener.close()
        thread.join(timeout=10)


def test_a_read_dropped_before_any_answer_is_sent_again_once() -> None:
    with _flaky_node() as (node, heads), _serving(_relay_app(node, ECHO_SECRET)) as relay_url:
        response = httpx.get(f"{relay_url}/api/v1/anything")

    assert response.status_code == 200, response.text
    assert response.text == "ok"
    assert heads == [b"GET /api/v1/anything HTTP/1.1"] * 2


def test_a_change_dropped_before_any_answer_is_not_sent_again() -> None:
    with _flaky_node() as (node, heads), _serving(_relay_app(node, ECHO_SECRET)) as relay_url:
        response = httpx.post(f"{relay_url}/api/v1/anything", content=b"{}")

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "node_unavailable"
    assert heads == [b"POST /api/v1/anything HTTP/1.1"]


def test_placement_picks_the_sandbox_node_running_the_fewest(
    postgres_server: PostgresServer,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
    shared_master_key: None,
) -> None:
    database_url, blobs = postgres_server.new_database(), shared_bucket(s3_server)
    busy = _node(tmp_path_factory, database_url, "busy", None, sandboxes=True, blobs=blobs)
    nodes = [busy]
    try:
        key = busy.api_key
        nodes.append(idle := _node(tmp_path_factory, database_url, "idle", key, sandboxes=True, blobs=blobs))
        front = _node(tmp_path_factory, database_url, "front", key, sandboxes=False, blobs=blobs)
        nodes.append(front)
        org, repo = f"org-{uuid.uuid4().hex[:8]}", f"repo-{uuid.uuid4().hex[:8]}"
        sandboxes = f"/organizations/{org}/repositories/{repo}/sandboxes"
        with (
            _client(busy.endpoint_url, busy.api_key) as on_busy,
            _client(front.endpoint_url, busy.api_key) as api,
        ):
            assert on_busy.post("/organizations", json={"name": org}).status_code == 201
            assert on_busy.post(f"/organizations/{org}/repositories", json={"name": repo}).status_code == 201
            started = [on_busy.post(sandboxes, json={"image": IMAGE, "mode": "service"}) for _ in range(4)]
            placed = [api.post(sandboxes, json={"image": IMAGE, "mode": "service"}) for _ in range(3)]
            ids = [response.json()["sandbox_id"] for response in started + placed]
            with psycopg.connect(database_url, autocommit=True) as conn:
                owners = dict(
                    conn.execute(
                        f"SELECT id, node_id FROM {CLUSTER_SCHEMA}.cluster_sandboxes WHERE id = ANY(%s)",
                        (ids,),
                    ).fetchall()
                )
            for sandbox_id in ids:
                api.delete(f"{sandboxes}/{sandbox_id}")
    finally:
        for node in reversed(nodes):
            node.stop()

    assert all(response.status_code == 201 for response in started + placed)
    assert [owners[sandbox_id] for sandbox_id in ids] == [busy.config.node_id] * 4 + [idle.config.node_id] * 3


def test_the_owner_sees_and_logs_the_original_client_address(
    echo_relay: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    with httpx.Client() as client:
        response = client.get(f"{echo_relay}/api/v1/who-am-i")
        host, port = response.extensions["network_stream"].get_extra_info("client_addr")

    assert response.status_code == 200, response.text
    assert response.json()["client"] == [host, port]  # not the relay's own address
    lines = [r for r in caplog.records if r.name == "uvicorn.access" and "/api/v1/who-am-i" in r.getMessage()]
    assert lines  # the owner's line (the relay's own, if it logs, names the client anyway)
    assert all(line.getMessage().startswith(f"{host}:{port} - ") for line in lines)
