"""What code inside a sandbox can and cannot do."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sandbox_helpers import Sandboxes, diff, put_objects, read_object, repo_url

pytestmark = pytest.mark.sandbox


def test_runs_as_non_root_without_capabilities(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service()
    result = sandboxes.exec(sid, "id -u; id -g; grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status")
    lines = result.stdout.decode().splitlines()
    assert lines[0] != "0"
    assert lines[1] != "0"
    caps = [line.split()[1] for line in lines[2:]]
    assert len(caps) == 5
    assert all(int(value, 16) == 0 for value in caps)


@pytest.mark.parametrize(
    "command",
    [
        "touch /etc/tilde-test",
        "touch /tilde-test",
        "touch /usr/bin/tilde-test",
        "mkdir /opt2",
        "mount -o remount,rw /",
        "mount -t tmpfs none /mnt",
        "cat /etc/shadow",
    ],
)
def test_system_is_read_only_and_secrets_hidden(
    sandboxes: Sandboxes, service: Callable[..., str], command: str
) -> None:
    sid = service()
    result = sandboxes.exec(sid, command)
    assert result.exit_code != 0, (command, result)
    if command == "cat /etc/shadow":
        assert b":" not in result.stdout


def test_host_processes_files_and_data_are_invisible(
    sandboxes: Sandboxes, service: Callable[..., str], server: Any
) -> None:
    marker = f"/tmp/tilde-host-marker-{uuid.uuid4().hex}"
    with open(marker, "w") as handle:
        handle.write("host")
    try:
        sid = service()
        files = sandboxes.exec(
            sid,
            f"test -e {marker} && echo MARKER; test -e {server.data_dir} && echo DATA; "
            "test -e /root/.ssh && echo ROOT",
        )
        processes = sandboxes.exec(sid, ["ps", "-eo", "comm="])
    finally:
        os.unlink(marker)
    assert files.stdout == b""
    # Only the sandbox's own processes: bubblewrap's init, the agent, and the ps just started.
    names = processes.stdout.decode().split()
    assert len(names) == 3, names
    assert {"bwrap", "ps"} <= set(names)
    assert str(os.getpid()) not in sandboxes.exec(sid, "ls /proc").stdout.decode().split()


def test_no_network_by_default(sandboxes: Sandboxes, service: Callable[..., str], server: Any) -> None:
    sid = service()
    probe = (
        "import socket,sys\n"
        "s = socket.socket()\n"
        "s.settimeout(3)\n"
        f"sys.exit(0 if s.connect_ex(('127.0.0.1', {server.port})) == 0 else 1)\n"
    )
    assert sandboxes.exec(sid, ["python3", "-c", probe]).exit_code == 1
    interfaces = sandboxes.exec(sid, "ls /sys/class/net 2>/dev/null || cat /proc/net/dev").stdout.decode()
    assert "eth" not in interfaces


def test_private_tmp_is_writable_and_not_committed(sandboxes: Sandboxes) -> None:
    status, log = sandboxes.run_once("echo t > /tmp/scratch && cat /tmp/scratch")
    assert status["status_reason"] == "no_changes"
    assert log == "t\n"


CLIENT = r"""
import json, os, urllib.request

def call(method, url, token=None, body=None, raw=None, host=None):
    headers = {"Host": host} if host else {}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()

status, body = call("GET", os.environ["TILDE_SANDBOX_CREDENTIALS_URI"])
creds = json.loads(body)
token = creds["access_token"]
api = os.environ["TILDE_API_URL"] + "/api/v1"
org, repo = os.environ["TILDE_REPOSITORY"].split("/")
base = f"{api}/organizations/{org}/repositories/{repo}"
sid = os.environ["TILDE_SESSION_ID"]
out = {"token": token, "creds_status": status, "principal_type": creds.get("principal_type")}
out["expires_at"] = creds["expires_at"]
s, b = call("GET", f"{base}/object?path=seed.txt&session_id={sid}", token)
out["read"] = [s, b.decode()]
s, b = call("PUT", f"{base}/object?session_id={sid}&path=api/written.txt", token)
target = json.loads(b)
s, _ = call("PUT", target["upload_url"], raw=b"via api\n")
s, b = call("POST", f"{base}/object/finalize?session_id={sid}&path=api/written.txt", token,
            {"upload_token": target["upload_token"], "content_type": "text/plain"})
out["finalize"] = s
s, b = call("GET", f"{base}/object?path=api/written.txt&session_id={sid}", token)
out["read_back"] = [s, b.decode()]
s, b = call("PUT", f"{base}/object?session_id={sid}&path=api/forged.txt", token, host="evil.example:6666")
out["forged_host_url"] = json.loads(b)["upload_url"]
s, _ = call("POST", f"{base}/sessions", token)
out["new_session"] = s
s, _ = call("GET", f"{api}/organizations", token)
out["list_orgs"] = s
open("fs.txt", "w").write("via filesystem\n")
print(json.dumps(out))
"""


def test_code_inside_uses_the_injected_credentials(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes
) -> None:
    put_objects(api, repo_path, {"seed.txt": b"seeded\n"})
    status, log = sandboxes.run_once(["python3", "-c", CLIENT])
    assert status["status_reason"] == "committed", log
    out = json.loads(log.strip().splitlines()[-1])
    assert out["creds_status"] == 200
    assert out["token"].startswith("tst-")
    assert out["principal_type"] == "user"
    assert out["read"] == [200, "seeded\n"]
    assert out["finalize"] == 201
    assert out["read_back"] == [200, "via api\n"]
    # Only the sandbox's own loopback relay is taken from Host; a forged Host gets the server's address.
    assert "evil.example" not in out["forged_host_url"]
    assert out["new_session"] == 403  # the token is limited to its own session
    assert out["list_orgs"] == 403  # ... and to its own repository: nothing org-wide
    # API writes and filesystem writes land in the same commit.
    assert diff(api, repo_path, status["commit_id"]) == {"api/written.txt": "added", "fs.txt": "added"}
    assert read_object(api, repo_path, "api/written.txt") == b"via api\n"
    # The token dies with its sandbox.
    after = httpx.get(
        f"{str(api.base_url).rstrip('/')}{repo_url(repo_path)}/objects",
        headers={"Authorization": f"Bearer {out['token']}"},
    )
    assert after.status_code == 401


# Network access (network: true, egress allow-lists) is tested in test_network.py.


def test_egress_and_network_exclude_each_other(sandboxes: Sandboxes) -> None:
    response = sandboxes.api.post(
        sandboxes.base, json={"image": "x", "command": ["true"], "network": True, "egress": {"allow": ["a"]}}
    )
    assert response.status_code == 400


SELF_COMMIT = """
import json, os, urllib.request
creds = json.load(urllib.request.urlopen(os.environ["TILDE_SANDBOX_CREDENTIALS_URI"]))
org, repo = os.environ["TILDE_REPOSITORY"].split("/")
base = f"{os.environ['TILDE_API_URL']}/api/v1/organizations/{org}/repositories/{repo}"
sid = os.environ["TILDE_SESSION_ID"]
auth = {"Authorization": "Bearer " + creds["access_token"], "Content-Type": "application/json"}

def call(method, url, body=None, headers=auth):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers)) as r:
        return json.loads(r.read() or b"{}")

target = call("PUT", f"{base}/object?session_id={sid}&path=api.txt")
call("PUT", target["upload_url"], b"via api\\n", headers={})
finalize = f"{base}/object/finalize?session_id={sid}&path=api.txt"
call("POST", finalize, {"upload_token": target["upload_token"]})
open("late.txt", "w").write("written after the inside commit\\n")
print(call("POST", f"{base}/sessions/{sid}", {"message": "inside"})["commit_id"])
"""


def test_code_inside_may_commit_its_own_session(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes
) -> None:
    status, log = sandboxes.run_once(["python3", "-c", SELF_COMMIT])
    assert (status["status"], status["status_reason"]) == ("done", "committed"), (log, status)
    assert status["commit_id"] == log.strip()
    assert diff(api, repo_path, status["commit_id"]) == {"api.txt": "added"}
    assert "later file changes were dropped" in status["warnings"][0]
