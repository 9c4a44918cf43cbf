"""The transport over real sockets: a scripted local HTTP server, a refused port, the real tilde-server."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

from tilde.core import Client, ConflictError, NotFoundError, ServerError, TransportError

if TYPE_CHECKING:
    from tilde.server import LocalServer

Reply = tuple[int, dict[str, str], bytes]


class Scripted:
    """A real HTTP server on a free loopback port that answers from a per-path script."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler], Reply]] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = outer.routes.get(self.path.split("?")[0])
                status, headers, body = route(self) if route else (404, {}, b'{"message": "no route"}')
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.close()


@pytest.fixture
def other_origin() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.close()


def live_client(url: str, sleeps: list[float], **kwargs: object) -> Client:
    kwargs.setdefault("api_key", "tuk-live")
    client = Client(endpoint_url=url, **kwargs)  # type: ignore[arg-type]
    client._sleep = sleeps.append
    return client


def test_retry_then_success_over_real_http(scripted: Scripted, sleeps: list[float]) -> None:
    replies = iter([(503, {"Retry-After": "1"}, b"busy"), (200, {"Content-Type": "application/json"}, b"{}")])
    scripted.routes["/api/v1/flaky"] = lambda handler: next(replies)
    with live_client(scripted.url, sleeps) as client:
        assert client._get_json("/flaky") == {}
    assert sleeps == [1.0]
    assert [seen[0] for seen in scripted.seen] == ["GET", "GET"]
    headers = scripted.seen[0][2]
    assert headers["authorization"] == "Bearer tuk-live"
    assert headers["user-agent"].startswith("tilde-python-sdk/")


def test_post_is_not_retried_over_real_http(scripted: Scripted, sleeps: list[float]) -> None:
    scripted.routes["/api/v1/create"] = lambda handler: (503, {}, b"busy")
    with live_client(scripted.url, sleeps) as client, pytest.raises(ServerError):
        client._post_json("/create", json={"name": "x"})
    assert len(scripted.seen) == 1
    assert sleeps == []


def test_refused_connection_is_retried_then_transport_error(sleeps: list[float]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port is closed again: connecting is refused, and nothing was sent, so even POST retries.
    with live_client(f"http://127.0.0.1:{port}", sleeps) as client, pytest.raises(TransportError):
        client._post_json("/x", json={})
    assert len(sleeps) == 2


def test_read_timeout_over_real_http(scripted: Scripted, sleeps: list[float]) -> None:
    def stall(handler: BaseHTTPRequestHandler) -> Reply:
        scripted.release.wait(10)
        return (200, {}, b"{}")

    scripted.routes["/api/v1/slow"] = stall
    client = live_client(scripted.url, sleeps, timeout=0.2, max_retries=1)
    with client, pytest.raises(TransportError, match="ReadTimeout"):
        client._get("/slow")
    assert len(sleeps) == 1


def test_redirect_auth_by_origin(scripted: Scripted, other_origin: Scripted, sleeps: list[float]) -> None:
    scripted.routes["/api/v1/same"] = lambda handler: (307, {"Location": f"{scripted.url}/blob"}, b"")
    scripted.routes["/blob"] = lambda handler: (200, {}, b"same-origin bytes")
    scripted.routes["/api/v1/cross"] = lambda handler: (
        307,
        {"Location": f"{other_origin.url}/blob?sig=s"},
        b"",
    )
    other_origin.routes["/blob"] = lambda handler: (200, {}, b"cross-origin bytes")
    with live_client(scripted.url, sleeps) as client:
        assert client._request("GET", "/same", follow_redirects=True).content == b"same-origin bytes"
        assert client._request("GET", "/cross", follow_redirects=True).content == b"cross-origin bytes"
    assert scripted.seen[1][1] == "/blob"
    assert scripted.seen[1][2]["authorization"] == "Bearer tuk-live"
    assert "authorization" not in other_origin.seen[0][2]


def test_against_tilde_server(server: LocalServer, sleeps: list[float]) -> None:
    with live_client(server.endpoint_url, sleeps, api_key=server.api_key) as client:
        org = f"core-{uuid.uuid4().hex[:10]}"
        created = client._post_json("/organizations", json={"name": org, "display_name": "Core"})
        assert created is not None
        assert created["name"] == org
        with pytest.raises(ConflictError):
            client._post_json("/organizations", json={"name": org, "display_name": "Core"})
        for index in range(3):
            client._post_json(
                f"/organizations/{org}/repositories", json={"name": f"r{index}", "visibility": "private"}
            )
        names = [
            item["name"] for item in client._paginate(f"/organizations/{org}/repositories", dict, page_size=1)
        ]
        assert names == ["r0", "r1", "r2"]
        assert org in [item["name"] for item in client._list_once("/organizations", dict)]
        with pytest.raises(NotFoundError) as info:
            client._get_json(f"/organizations/{org}/repositories/missing")
        assert info.value.code
        assert info.value.request_id
        assert client._delete(f"/organizations/{org}/repositories/r2") is None
    assert sleeps == []
