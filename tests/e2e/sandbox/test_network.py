"""Network access of sandboxes: an IAM action, and only through the egress proxy, never to the host itself.

A server of its own, whose admin allows one non-public address: a small HTTP server on loopback standing in
for an internal mirror (offline, so no public host can be used). The server's own port, also on loopback, and
the cloud metadata address must stay unreachable.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandbox_helpers import Sandboxes

from tilde.server import LocalServer, ServerConfig
from tilde.server.sandbox.egress import (
    OPEN_POLICY,
    address_allowed,
    parse_address_rules,
    start_egress_proxy,
)

pytestmark = pytest.mark.sandbox


class _Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"upstream ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 (the address the admin allows); yields its port."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@dataclass
class NetServer:
    server: LocalServer
    admin: Sandboxes
    upstream: int

    def member(self, *policies: str) -> Sandboxes:
        """A member user of the admin's organization with the given built-in or inline policies attached."""
        org = self.admin.repo_path.split("/")[0]
        name = f"user-{uuid.uuid4().hex[:10]}"
        token = self.server.create_api_key("user", name, org)
        members = self.admin.api.get(f"/organizations/{org}/members").json()["results"]
        user_id = next(m["user_id"] for m in members if m["username"] == name)
        existing = self.admin.api.get(f"/organizations/{org}/policies").json()["results"]
        for policy in policies:
            found = [p["id"] for p in existing if p["name"] == policy and p["is_builtin"]]
            if found:
                policy_id = found[0]
            else:
                body = {"name": f"p-{uuid.uuid4().hex[:10]}", "policy_text": policy}
                created = self.admin.api.post(f"/organizations/{org}/policies", json=body)
                assert created.status_code == 201, created.text
                policy_id = created.json()["id"]
            attach = {"principal_type": "user", "principal_id": user_id}
            response = self.admin.api.post(
                f"/organizations/{org}/policies/{policy_id}/attachments", json=attach
            )
            assert response.status_code == 201, response.text
        client = httpx.Client(
            base_url=str(self.admin.api.base_url), headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        return Sandboxes(client, self.admin.repo_path, self.admin.ws_base, token)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, upstream: int) -> Iterator[NetServer]:
    data_dir = tmp_path_factory.mktemp("tilde-server-network")
    settings = {"network_allow": [f"127.0.0.1:{upstream}"]}
    with (
        LocalServer(config=ServerConfig(data_dir=data_dir, sandbox=settings)) as server,
        httpx.Client(
            base_url=server.endpoint_url + "/api/v1",
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=60,
        ) as api,
    ):
        org = f"org-{uuid.uuid4().hex[:10]}"
        assert api.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
        repo = f"repo-{uuid.uuid4().hex[:10]}"
        body = {"name": repo, "visibility": "private"}
        response = api.post(f"/organizations/{org}/repositories", json=body)
        assert response.status_code == 201, response.text
        ws_base = server.endpoint_url.replace("http://", "ws://") + "/api/v1"
        yield NetServer(server, Sandboxes(api, f"{org}/{repo}", ws_base, server.api_key), upstream)


def test_network_needs_its_own_action(net: NetServer) -> None:
    writer = net.member("ReadWrite")
    try:
        refused = writer.api.post(writer.base, json={"image": "x", "command": ["true"], "network": True})
        assert refused.status_code == 403, refused.text
        body = refused.json()
        assert body["code"] == "forbidden"
        assert "UseSandboxNetwork" in body["message"]
        assert set(body) >= {"message", "code", "request_id"}
        # The same member may still start sandboxes without network.
        assert writer.wait(writer.create(command=["true"]))["status"] == "done"
    finally:
        writer.api.close()
    networked = net.member("ReadWrite", "UseSandboxNetwork()")
    try:
        assert networked.wait(networked.create(command=["true"], network=True))["status"] == "done"
    finally:
        networked.api.close()


def test_an_egress_allow_list_needs_the_network_action_too(net: NetServer) -> None:
    writer = net.member("ReadWrite")
    try:
        body = {"image": "x", "command": ["true"], "egress": {"allow": ["*"]}}
        refused = writer.api.post(writer.base, json=body)
        assert refused.status_code == 403, refused.text
        assert "UseSandboxNetwork" in refused.json()["message"]
        # An empty allow-list is no network at all: nothing more to grant.
        assert writer.wait(writer.create(command=["true"], egress={"allow": []}))["status"] == "done"
    finally:
        writer.api.close()


PROBE = r"""
import json, os, socket, sys, urllib.request, urllib.error, http.client
server_port, upstream = int(sys.argv[1]), int(sys.argv[2])
out = {}
s = socket.socket()
s.settimeout(5)
out["direct"] = s.connect_ex(("127.0.0.1", server_port)) == 0
s.close()
out["interfaces"] = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return [response.status, response.read().decode().strip()]
    except urllib.error.HTTPError as error:
        return [error.code, ""]
    except OSError as error:
        return ["error", str(error)]

out["server"] = get(f"http://127.0.0.1:{server_port}/healthz")
out["server_by_name"] = get(f"http://localhost:{server_port}/healthz")
out["metadata"] = get("http://169.254.169.254/latest/meta-data/")
out["metadata_v6"] = get("http://[fd00:ec2::254]/latest/meta-data/")
out["upstream"] = get(f"http://localhost:{upstream}/")
proxy = urllib.request.getproxies()["https"].rsplit(":", 1)
def tunnel(port):
    connection = http.client.HTTPConnection(proxy[0].split("//")[1], int(proxy[1]), timeout=10)
    connection.set_tunnel("127.0.0.1", port)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status
    except OSError as error:
        return str(error)
out["tunnel_server"] = tunnel(server_port)
out["tunnel_upstream"] = tunnel(upstream)
print(json.dumps(out))
"""


def test_network_goes_through_the_proxy_and_never_to_the_host(net: NetServer) -> None:
    port = net.server.port
    sandboxes = net.admin
    sid = sandboxes.create(command=["python3", "-c", PROBE, str(port), str(net.upstream)], network=True)
    status = sandboxes.wait(sid)
    log = sandboxes.logs(sid)
    assert status["status"] == "done", log
    out = json.loads(log.strip().splitlines()[-1])
    # No way around the proxy: the sandbox's network namespace has loopback only.
    assert out["direct"] is False
    assert out["interfaces"] in ([], ["lo"])
    # 127.0.0.1 is in NO_PROXY (the API relay listens there), so this one is tried directly and refused.
    assert out["server"][0] == "error"
    assert out["server_by_name"][0] == 403
    assert out["metadata"][0] == 403
    assert out["metadata_v6"][0] == 403
    assert "Tunnel connection failed: 403" in out["tunnel_server"]
    # What the admin allowed is reachable, by name and through a CONNECT tunnel.
    assert out["upstream"] == [200, "upstream ok"]
    assert out["tunnel_upstream"] == 200
    network = sandboxes.api.get(f"{sandboxes.base}/{sid}/logs/network")
    entries = [json.loads(line) for line in network.text.splitlines()]
    denied = {e["url"] for e in entries if e["decision"] == "deny"}
    assert "http://169.254.169.254/latest/meta-data/" in denied
    assert f"http://localhost:{port}/healthz" in denied
    assert f"https://127.0.0.1:{port}" in denied
    assert all("non-public address" in e["reason"] for e in entries if e["decision"] == "deny")
    assert f"http://localhost:{net.upstream}/" in {e["url"] for e in entries if e["decision"] == "allow"}


EGRESS = """
import sys, urllib.request, urllib.error, http.client
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            print(url, response.status, response.read().decode().strip())
    except urllib.error.HTTPError as error:
        print(url, error.code)
    except OSError as error:
        print(url, "error")
# A CONNECT tunnel (what HTTPS clients use), here carrying plain HTTP.
proxy = urllib.request.getproxies()["http"].rsplit(":", 1)
connection = http.client.HTTPConnection(proxy[0].split("//")[1], int(proxy[1]), timeout=10)
connection.set_tunnel("localhost", int(sys.argv[1].split(":")[2].split("/")[0]))
connection.request("GET", "/")
print("tunnel", connection.getresponse().status)
"""


def test_egress_allow_list_limits_hosts_and_logs_decisions(net: NetServer) -> None:
    sandboxes = net.admin
    allowed = f"http://localhost:{net.upstream}/"
    unlisted = f"http://127.0.0.2:{net.upstream}/"
    # Listed by the sandbox's creator, but the server's own port is not an address the admin allowed.
    server = f"http://localhost:{net.server.port}/healthz"
    sid = sandboxes.create(
        command=["python3", "-c", EGRESS, allowed, unlisted, server],
        egress={"allow": [f"localhost:{net.upstream}", f"localhost:{net.server.port}"]},
    )
    status = sandboxes.wait(sid)
    log = sandboxes.logs(sid)
    assert status["status"] == "done", log
    expected = [f"{allowed} 200 upstream ok", f"{unlisted} 403", f"{server} 403", "tunnel 200"]
    assert log.splitlines() == expected
    network = sandboxes.api.get(f"{sandboxes.base}/{sid}/logs/network")
    entries = [json.loads(line) for line in network.text.splitlines()]
    assert [(e["decision"], e["url"]) for e in entries] == [
        ("allow", allowed),
        ("deny", unlisted),
        ("deny", server),
        ("allow", f"https://localhost:{net.upstream}"),
    ]
    assert entries[0]["status"] == 200
    assert entries[1]["reason"] == "not in the sandbox's allow-list"
    assert "non-public address" in entries[2]["reason"]


def test_address_rules() -> None:
    rules = parse_address_rules(["127.0.0.1:8080", "10.0.0.0/8", "[::1]:9000", "fd00::/8"])
    assert address_allowed("93.184.216.34", 80)
    assert address_allowed("2606:2800:220:1::248", 443)
    for blocked in (
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "169.254.169.254",
        "fe80::1",
        "100.100.100.200",
        "fd00:ec2::254",
        "10.1.2.3",
        "192.168.0.1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "not-an-address",
    ):
        assert not address_allowed(blocked, 80), blocked
    assert address_allowed("127.0.0.1", 8080, rules)
    assert not address_allowed("127.0.0.1", 8081, rules)
    assert address_allowed("10.9.9.9", 1, rules)
    assert address_allowed("::1", 9000, rules)
    assert address_allowed("::ffff:127.0.0.1", 8080, rules)
    assert address_allowed("fd00:ec2::254", 80, rules)
    for bad in ("nonsense", "127.0.0.1:x", "[::1]x", "1.2.3.4:70000"):
        with pytest.raises(ValueError, match="network_allow"):
            parse_address_rules([bad])


async def _request(socket_path: str, head: bytes) -> tuple[bytes, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    writer.write(head)
    await writer.drain()
    return await reader.readline(), writer


def test_the_proxy_bounds_connections_and_its_log(tmp_path: Path, upstream: int) -> None:
    """The proxy runs in the server process: a sandbox may not hold its descriptors or fill its disk."""
    socket_path, log = str(tmp_path / "proxy.sock"), tmp_path / "network.ndjson"

    async def scenario() -> None:
        rules = parse_address_rules([f"127.0.0.1:{upstream}"])
        server = await start_egress_proxy(
            socket_path, OPEN_POLICY, log, rules, max_connections=2, max_log_bytes=400
        )
        connect = f"CONNECT 127.0.0.1:{upstream} HTTP/1.1\r\n\r\n".encode()
        try:
            first, second = [await _request(socket_path, connect) for _ in range(2)]
            assert first[0].startswith(b"HTTP/1.1 200")
            assert second[0].startswith(b"HTTP/1.1 200")
            refused, writer = await _request(socket_path, connect)
            assert refused.startswith(b"HTTP/1.1 503"), refused
            writer.close()
            first[1].close()
            second[1].close()
            for _ in range(100):  # the two tunnels end once the proxy sees the hang-ups
                again, writer = await _request(socket_path, connect)
                writer.close()
                if again.startswith(b"HTTP/1.1 200"):
                    break
                await asyncio.sleep(0.05)
            assert again.startswith(b"HTTP/1.1 200"), again
            denied = b"GET http://169.254.169.254/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"
            for _ in range(5):
                status, writer = await _request(socket_path, denied)
                writer.close()
                assert status.startswith(b"HTTP/1.1 403"), status
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    # Up to the limit, then the one line saying so.
    assert len(text) - len(text.splitlines(keepends=True)[-1]) <= 400
    assert "limit reached" in lines[-1]["note"]
    assert all("note" not in line for line in lines[:-1])
