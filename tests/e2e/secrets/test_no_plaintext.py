"""No secret value and no API key in clear in the data directory or the server's log, after real use.

The server runs as its own process (``tilde-server serve``, access log on, every logger at DEBUG into a
file); it is used with admin, user, agent, role and sandbox (``tst-``) tokens, a wrong token, and secrets at
both scopes injected into a real sandbox; then every file under the data directory (SQLite WAL included)
and every line the server logged is searched for each of them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from data_scan import files_containing
from secrets_helpers import ALLOW_ALL

import tilde

pytestmark = pytest.mark.sandbox

_LAUNCH = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, filename=sys.argv[1])
sys.argv = ["tilde-server", "serve", *sys.argv[2:]]
from tilde.server.cli import main
main()
"""

_IN_SANDBOX = """
import hashlib, json, os, urllib.request
creds = json.load(urllib.request.urlopen(os.environ["TILDE_SANDBOX_CREDENTIALS_URI"]))
token = creds["access_token"]
url = os.environ["TILDE_API_URL"] + "/api/v1/organizations/scan/repositories/data"
request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
print("api", urllib.request.urlopen(request).status)
print("reversed", token[::-1])
for name in ("REPO_SECRET", "AGENT_SECRET"):
    print(name, hashlib.sha256(os.environ[name].encode()).hexdigest())
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self.log = root / "debug.log"
        self.stdout = root / "stdout.log"
        self.admin_key = "tuk-" + secrets.token_urlsafe(32)
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        with self.stdout.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _LAUNCH,
                    str(self.log),
                    "--port",
                    port,
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TILDE_SERVER_ADMIN_KEY": self.admin_key},
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.stdout.read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def test_nothing_secret_is_stored_or_logged_in_clear(served: Served) -> None:
    needles = {
        "admin key": served.admin_key,
        "repository secret": "repo-" + secrets.token_hex(16),
        "agent secret": "agent-" + secrets.token_hex(16),
        "wrong token": "tuk-" + secrets.token_urlsafe(32),
    }
    api = httpx.Client(
        base_url=served.url + "/api/v1", headers={"Authorization": f"Bearer {served.admin_key}"}, timeout=60
    )
    with api:
        _ok(api.post("/organizations", json={"name": "scan"}), 201)
        _ok(api.post("/organizations/scan/repositories", json={"name": "data"}), 201)
        _ok(api.post("/organizations/scan/agents", json={"name": "bot", "description": ""}), 201)
        _ok(api.put("/organizations/scan/agents/bot", json={"inline_policy": ALLOW_ALL}))
        _ok(api.post("/organizations/scan/roles", json={"name": "ops", "description": ""}), 201)
        needles["agent key"] = _ok(
            api.post("/organizations/scan/agents/bot/auth/keys", json={"name": "k"}), 201
        )["token"]
        needles["role key"] = _ok(
            api.post("/organizations/scan/roles/ops/auth/keys", json={"name": "k"}), 201
        )["token"]
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "tilde.server",
                "user",
                "create",
                "carol",
                "--data-dir",
                str(served.data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        needles["user key"] = created.stdout.strip()
        _ok(api.post("/organizations/scan/members", json={"username": "carol"}), 201)
        repo_secrets = "/organizations/scan/repositories/data/secrets"
        _ok(api.put(f"{repo_secrets}/REPO_SECRET", json={"value": needles["repository secret"]}))
        _ok(
            api.put(
                "/organizations/scan/agents/bot/secrets/AGENT_SECRET", json={"value": needles["agent secret"]}
            )
        )
        assert _ok(api.get(f"{repo_secrets}/REPO_SECRET"))["value"] == needles["repository secret"]
        for name in ("agent key", "role key", "user key"):
            _ok(
                httpx.get(
                    f"{served.url}/api/v1/organizations", headers={"Authorization": f"Bearer {needles[name]}"}
                )
            )
        wrong = httpx.get(
            f"{served.url}/api/v1/organizations",
            headers={"Authorization": f"Bearer {needles['wrong token']}"},
        )
        assert wrong.status_code == 401

    with tilde.Client(endpoint_url=served.url, api_key=needles["agent key"]) as as_agent:
        result = as_agent.repository("scan/data").execute(
            ["python3", "-c", _IN_SANDBOX],
            image="python:3.12",
        )
    lines = dict(line.split(" ", 1) for line in result.stdout.text().splitlines() if " " in line)
    assert lines["api"] == "200"
    for variable, label in (("REPO_SECRET", "repository secret"), ("AGENT_SECRET", "agent secret")):
        assert lines[variable] == hashlib.sha256(needles[label].encode()).hexdigest()  # injected
    needles["sandbox token"] = lines["reversed"][::-1]
    assert needles["sandbox token"].startswith("tst-")
    assert files_containing(served.data_dir, needles) == {}
    served.stop()  # SQLite checkpoints its WAL on close: search again afterwards
    assert files_containing(served.data_dir, needles) == {}
    log = served.log.read_text() + served.stdout.read_text()
    assert "GET /api/v1/organizations" in log  # the access log was on
    assert [label for label, needle in needles.items() if needle in log] == []
