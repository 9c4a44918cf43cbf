"""A ``tilde-server serve`` process against hostile clients over real sockets.

Idle-socket floods, slow headers, oversize headers, one address hogging connections, a forged ``Host``
header and clients hanging up mid-body: the server stays available, bounded in memory, and logs each
condition in one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import selectors
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import free_port, wait_until_up


class ServeProcess:
    """``python -m tilde.server serve`` with its output in a log file."""

    def __init__(
        self, tmp_path: Path, args: list[str], fd_limit: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.data_dir = tmp_path / "data"
        self.log_path = tmp_path / "server.log"
        self.admin_key = "tuk-hostile-" + os.urandom(8).hex()
        self.url = f"http://127.0.0.1:{self.port}"

        def limit_files() -> None:
            if fd_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tilde.server",
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--admin-key",
                    self.admin_key,
                    *args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limit_files,
                env={**os.environ, **(env or {})},
            )
        wait_until_up(self.url, self.process, log=self.log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None
        return int(match.group(1))

    def open_sockets(self) -> int:
        """How many sockets the server process holds now (connections, the listener, a few internal ones)."""
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        count = 0
        for entry in fd_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):
                count += os.readlink(entry).startswith("socket:")
        return count

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=30
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


Start = Callable[..., ServeProcess]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """``start(args, fd_limit=None, env=None)``: a server process, stopped at the end of the test."""
    started: list[ServeProcess] = []

    def make(args: list[str], fd_limit: int | None = None, env: dict[str, str] | None = None) -> ServeProcess:
        server = ServeProcess(tmp_path / str(len(started)), args, fd_limit, env)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))


def flood(port: int, count: int, sources: list[str]) -> list[socket.socket]:
    """Open ``count`` idle connections at once (non-blocking connects), cycling through ``sources``."""
    sockets = []
    for n in range(count):
        sock = socket.socket()
        sock.bind((sources[n % len(sources)], 0))
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sockets.append(sock)
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_WRITE)
        pending = len(sockets)
        end = time.monotonic() + 60
        while pending and time.monotonic() < end:
            for key, _ in selector.select(timeout=1):
                selector.unregister(key.fileobj)
                pending -= 1
    for sock in sockets:
        sock.setblocking(True)
    return sockets


def is_open(sock: socket.socket) -> bool:
    """True while the server keeps ``sock`` open without having answered on it."""
    sock.setblocking(False)
    try:
        sock.recv(1 << 16)  # an answer (503) or the end of the stream: closed by the server
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Read one whole response (the server closes the connection after it)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(1 << 16):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def closed_by_server(sock: socket.socket, trickle: bytes, rounds: int = 200) -> bool:
    """Send ``trickle`` every 0.1 s; True once the server has closed the connection."""
    sock.settimeout(0.1)
    for _ in range(rounds):
        try:
            if sock.recv(1 << 16) == b"":
                return True
        except TimeoutError:
            pass
        except ConnectionResetError:
            return True
        try:
            sock.sendall(trickle)
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


EXHAUSTION = re.compile(
    r"connection limit reached|reached the limit of \d+ connections per address|cannot accept"
)


def test_idle_socket_flood_within_a_low_file_limit(start: Start) -> None:
    # 512 descriptors and default caps: 2,000 idle sockets used to exhaust them (every request then timed out
    # and each accept logged a traceback); now they displace one another and requests still get through.
    server = start([], fd_limit=512)
    flood_sockets = flood(server.port, 2000, ["127.0.0.1"])
    try:
        response = httpx.get(server.url + "/healthz", timeout=20)
        assert response.status_code == 200
        with server.api() as api:
            assert api.get("/organizations").status_code == 200
        # 256 connections per address (a quarter of 512, at least 256), and a few sockets of its own.
        assert server.open_sockets() <= 256 + 16
    finally:
        for sock in flood_sockets:
            sock.close()
    log = server.log()
    assert "Too many open files" not in log
    assert "Traceback" not in log
    assert len(EXHAUSTION.findall(log)) == 1, log[-3000:]


def test_total_cap_displaces_idle_connections_of_many_addresses(start: Start) -> None:
    caps = ["--max-connections", "100", "--max-connections-per-address", "0"]
    server = start(caps, env={"TILDE_SERVER_HEADER_TIMEOUT": "120"})
    flood_sockets = flood(server.port, 600, [f"127.0.0.{n}" for n in range(2, 6)])
    try:
        # Displacing the idle ones is what makes room: the header timeout is far away.
        assert httpx.get(server.url + "/healthz", timeout=20).status_code == 200
        assert server.open_sockets() <= 100 + 16
    finally:
        for sock in flood_sockets:
            sock.close()
    log = server.log()
    assert len(EXHAUSTION.findall(log)) == 1, log[-3000:]
    assert "Traceback" not in log


def test_busy_connections_of_one_address_are_capped(start: Start) -> None:
    # Settings from the environment (an older server starts too, and shows what was missing).
    server = start(
        [], env={"TILDE_SERVER_MAX_CONNECTIONS": "200", "TILDE_SERVER_MAX_CONNECTIONS_PER_ADDRESS": "20"}
    )
    # A request whose body never comes is in progress: it keeps its slot (no header timeout applies).
    busy = []
    for _ in range(20):
        sock = connect(server.port, "127.0.0.2")
        sock.sendall(
            b"POST /api/v1/organizations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Authorization: Bearer " + server.admin_key.encode() + b"\r\n\r\n"
        )
        busy.append(sock)
    try:
        with server.api() as api:  # each request is processed in order: all 20 are in progress now
            assert api.get("/organizations").status_code == 200
        refused = connect(server.port, "127.0.0.2")
        status, body = read_response(refused)
        assert status == 503
        error = json.loads(body)
        assert error["code"] == "too_many_connections"
        assert set(error) == {"message", "code", "request_id"}
        refused.close()
        other = httpx.get(server.url + "/healthz", timeout=20)  # another address still gets in
        assert other.status_code == 200
        assert all(is_open(sock) for sock in busy)
    finally:
        for sock in busy:
            sock.close()
    assert len(EXHAUSTION.findall(server.log())) == 1


def test_slow_and_silent_headers_are_disconnected(start: Start) -> None:
    server = start([], env={"TILDE_SERVER_HEADER_TIMEOUT": "1"})
    slow = connect(server.port)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    silent = connect(server.port)
    try:
        assert closed_by_server(slow, b"X-a: b\r\n")
        assert closed_by_server(silent, b"")
        # An ordinary request on a fresh connection is unaffected.
        assert httpx.get(server.url + "/healthz", timeout=20).status_code == 200
    finally:
        slow.close()
        silent.close()


def test_oversize_headers_are_refused_and_memory_stays_bounded(start: Start) -> None:
    server = start([])
    sock = connect(server.port)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    status, body = read_response(sock)
    sock.close()
    assert status == 431
    assert json.loads(body)["code"] == "header_too_large"
    before = server.peak_rss_kib()
    for _ in range(4):
        sock = connect(server.port)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(64):  # 64 MiB of header, 1 MiB at a time
                sock.sendall(b"X-Big: " + b"a" * (1 << 20))
        sock.close()
    assert httpx.get(server.url + "/healthz", timeout=20).status_code == 200
    # The header cap (64 KiB) bounds what is buffered: far below the 64 MiB sent, whatever malloc keeps.
    assert server.peak_rss_kib() - before < 16 * 1024


def _stage(api: httpx.Client, headers: dict[str, str] | None = None) -> tuple[str, str, dict[str, str]]:
    assert api.post("/organizations", json={"name": "hostile"}).status_code in (201, 409)
    created = api.post("/organizations/hostile/repositories", json={"name": "repo"})
    assert created.status_code in (201, 409)
    base = "/organizations/hostile/repositories/repo"
    session_id = api.post(base + "/sessions").json()["session_id"]
    staged = api.put(base + "/object", params={"session_id": session_id, "path": "a.txt"}, headers=headers)
    assert staged.status_code == 200, staged.text
    body: dict[str, str] = staged.json()
    return base, session_id, body


def test_host_header_does_not_leak_into_upload_urls(start: Start) -> None:
    server = start([])
    with server.api() as api:
        _, _, staged = _stage(api, headers={"Host": "evil.example:6666"})
    assert staged["upload_url"].startswith(server.url + "/uploads/"), staged["upload_url"]
    with server.api() as api:  # a loopback Host is kept for sandbox tokens only (their in-sandbox relay)
        _, _, staged = _stage(api, headers={"Host": "127.0.0.1:1"})
    assert staged["upload_url"].startswith(server.url + "/uploads/"), staged["upload_url"]

    public = start(["--public-url", "https://tilde.example.com/"])
    with public.api() as api:
        _, _, staged = _stage(api, headers={"Host": "evil.example:6666"})
    assert staged["upload_url"].startswith("https://tilde.example.com/uploads/"), staged["upload_url"]

    wildcard = start(["--host", "0.0.0.0"])
    with wildcard.api() as api:
        _, _, staged = _stage(api, headers={"Host": "evil.example:6666"})
    assert staged["upload_url"].startswith(wildcard.url + "/uploads/"), staged["upload_url"]


def test_data_files_are_private(start: Start) -> None:
    server = start([])
    with server.api() as api:
        base, session_id, staged = _stage(api)
        put = httpx.put(staged["upload_url"], content=b"secret bytes")
        assert put.status_code == 200
        finalized = api.post(
            base + "/object/finalize",
            params={"session_id": session_id, "path": "a.txt"},
            json={
                "upload_token": staged["upload_token"],
                "checksum": put.headers["etag"].strip('"'),
                "size_bytes": 12,
            },
        )
        assert finalized.status_code == 201, finalized.text
        assert api.post(f"{base}/sessions/{session_id}", json={"message": "m"}).status_code == 200
    seen = {"file": 0, "dir": 1}
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    for root, dirs, files in os.walk(server.data_dir):
        for name in dirs:
            mode = stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode)
            assert mode & 0o077 == 0, (root, name, oct(mode))
            seen["dir"] += 1
        for name in files:
            mode = stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode)
            assert mode & 0o077 == 0, (root, name, oct(mode))
            seen["file"] += 1
    assert seen["file"] >= 4  # databases, secrets and the blob at least


def test_client_hanging_up_mid_body_logs_one_line(start: Start) -> None:
    server = start([])
    for _ in range(3):
        sock = connect(server.port)
        sock.sendall(
            b"POST /api/v1/organizations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + server.admin_key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        time.sleep(0.2)
        sock.close()
    # The server notices the hang-up when it next reads: one request more flushes it.
    with server.api() as api:
        assert api.get("/organizations").status_code == 200
    deadline = time.monotonic() + 10
    while "went away" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = server.log()
    assert "Traceback" not in log
    assert "ClientDisconnect" not in log
    lines = [line for line in log.splitlines() if "went away" in line]
    assert len(lines) == 3, log[-3000:]


def test_websocket_and_long_requests_give_their_slots_back(tmp_path: Path) -> None:
    # In-process server with a tiny cap: a slot that an upgraded (WebSocket) or finished connection kept would
    # soon leave no room at all.
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as ws_connect

    from tilde.server import LocalServer, ServerConfig

    config = ServerConfig(data_dir=tmp_path, max_connections=4, max_connections_per_address=4)
    with LocalServer(config=config) as server:
        ws_url = (
            server.endpoint_url.replace("http", "ws")
            + "/api/v1/organizations/o/repositories/r/sandboxes/s/exec"
        )
        for _ in range(12):
            with pytest.raises(InvalidStatus):
                ws_connect(ws_url, open_timeout=20).close()
            with httpx.Client(base_url=server.endpoint_url, timeout=20) as client:
                assert client.get("/healthz").status_code == 200
        guard = server._server.guard  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while guard.open and time.monotonic() < deadline:
            time.sleep(0.05)
        assert guard.open == 0


def _keep_alive_request(sock: socket.socket) -> bytes:
    """Send one health request on a kept-alive connection and read its whole answer."""
    sock.settimeout(30)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not data.endswith(b'{"status":"ok"}'):
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    return data


def test_each_response_starts_a_new_header_window_on_a_kept_alive_connection(start: Start) -> None:
    server = start([], env={"TILDE_SERVER_HEADER_TIMEOUT": "1"})
    steady = connect(server.port)
    try:
        # Requests 0.4 s apart, for longer than one window: each response opens a new one.
        for _ in range(5):
            assert _keep_alive_request(steady).startswith(b"HTTP/1.1 200 ")
            time.sleep(0.4)
        assert _keep_alive_request(steady).startswith(b"HTTP/1.1 200 ")
    finally:
        steady.close()
    slow = connect(server.port)
    try:
        # After a response, a header block that trickles in is cut off like a first one.
        assert _keep_alive_request(slow).startswith(b"HTTP/1.1 200 ")
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert closed_by_server(slow, b"X-a: b\r\n")
    finally:
        slow.close()
