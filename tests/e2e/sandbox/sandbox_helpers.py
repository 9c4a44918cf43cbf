"""Helpers for the sandbox end-to-end tests: raw HTTP against the `server` fixture, plus the /exec
websocket."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.sync.client import connect

LAUNCH, STDIN, STDIN_CLOSE, STDOUT, STDERR, EXIT = range(6)


def repo_url(repo_path: str) -> str:
    org, repo = repo_path.split("/")
    return f"/organizations/{org}/repositories/{repo}"


def put_objects(api: httpx.Client, repo_path: str, objects: dict[str, bytes]) -> str:
    """Commit ``objects`` through the contract's upload flow; returns the commit id."""
    base = repo_url(repo_path)
    session_id = api.post(f"{base}/sessions").json()["session_id"]
    for path, data in objects.items():
        target = api.put(f"{base}/object", params={"session_id": session_id, "path": path}).json()
        uploaded = httpx.put(
            target["upload_url"], content=data, headers={"Content-Type": "application/octet-stream"}
        )
        assert uploaded.is_success, uploaded.text
        done = api.post(
            f"{base}/object/finalize",
            params={"session_id": session_id, "path": path},
            json={"upload_token": target["upload_token"], "content_type": "text/plain"},
        )
        assert done.status_code == 201, done.text
    committed = api.post(f"{base}/sessions/{session_id}", json={"message": "seed"})
    assert committed.status_code == 200, committed.text
    commit_id: str = committed.json()["commit_id"]
    return commit_id


def list_objects(api: httpx.Client, repo_path: str) -> dict[str, dict[str, Any]]:
    response = api.get(f"{repo_url(repo_path)}/objects", params={"amount": 1000})
    assert response.status_code == 200, response.text
    return {item["path"]: item["entry"] for item in response.json()["results"]}


def read_object(api: httpx.Client, repo_path: str, path: str) -> bytes:
    response = api.get(f"{repo_url(repo_path)}/object", params={"path": path}, follow_redirects=True)
    assert response.status_code == 200, response.text
    return response.content


def head_commit(api: httpx.Client, repo_path: str) -> str | None:
    results = api.get(f"{repo_url(repo_path)}/log", params={"amount": 1}).json()["results"]
    return results[0]["id"] if results else None


def diff(api: httpx.Client, repo_path: str, commit_id: str) -> dict[str, str]:
    commit = api.get(f"{repo_url(repo_path)}/commits/{commit_id}").json()
    params: dict[str, Any] = {"right": commit_id, "amount": 1000}
    if commit.get("parents"):
        params["left"] = commit["parents"][0]
    response = api.get(f"{repo_url(repo_path)}/diff", params=params)
    assert response.status_code == 200, response.text
    return {item["path"]: item["status"] for item in response.json()["results"]}


@dataclass
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit: dict[str, Any]
    frame_sizes: list[int] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return int(self.exit["exit_code"])


@dataclass
class Sandboxes:
    """Sandbox operations on one repository over raw HTTP."""

    api: httpx.Client
    repo_path: str
    ws_base: str
    token: str

    @property
    def base(self) -> str:
        return f"{repo_url(self.repo_path)}/sandboxes"

    def create(self, **body: Any) -> str:
        body.setdefault("image", "ubuntu:22.04")
        response = self.api.post(self.base, json=body)
        assert response.status_code == 201, response.text
        sandbox_id: str = response.json()["sandbox_id"]
        return sandbox_id

    def status(self, sandbox_id: str, **params: Any) -> dict[str, Any]:
        response = self.api.get(f"{self.base}/{sandbox_id}/status", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait(self, sandbox_id: str, *, while_: str | None = None, timeout: float = 60) -> dict[str, Any]:
        """Long-poll until the status leaves ``while_`` (default: until terminal)."""
        deadline = time.monotonic() + timeout
        while True:
            params: dict[str, Any] = {"wait": 30}
            if while_:
                params["while"] = while_
            body = self.status(sandbox_id, **params)
            if (body["status"] != while_) if while_ else body["status"] not in ("starting", "running"):
                return body
            assert time.monotonic() < deadline, f"sandbox {sandbox_id} still {body}"

    def run_once(self, command: list[str] | str, **body: Any) -> tuple[dict[str, Any], str]:
        sandbox_id = self.create(command=command, **body)
        status = self.wait(sandbox_id)
        return status, self.logs(sandbox_id)

    def logs(self, sandbox_id: str) -> str:
        response = self.api.get(f"{self.base}/{sandbox_id}/logs/stdout")
        assert response.status_code == 200, response.text
        return response.text

    def service(self, **body: Any) -> str:
        sandbox_id = self.create(mode="service", **body)
        status = self.wait(sandbox_id, while_="starting")
        assert status["status"] == "running", status
        return sandbox_id

    def exec_url(self, sandbox_id: str) -> str:
        return f"{self.ws_base}{self.base}/{sandbox_id}/exec"

    def exec(
        self,
        sandbox_id: str,
        cmd: list[str] | str,
        *,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        output: threading.Event | None = None,
    ) -> ExecResult:
        """Run ``cmd`` over the exec websocket; ``output`` is set when the first stdout bytes arrive."""
        launch: dict[str, Any] = {"cmd": ["sh", "-c", cmd] if isinstance(cmd, str) else cmd}
        if env is not None:
            launch["env"] = env
        if cwd is not None:
            launch["cwd"] = cwd
        if timeout is not None:
            launch["timeout"] = timeout
        out, err, sizes = bytearray(), bytearray(), []
        with connect(
            self.exec_url(sandbox_id),
            additional_headers={"Authorization": f"Bearer {self.token}"},
            open_timeout=10,
        ) as ws:
            ws.send(bytes([LAUNCH]) + json.dumps(launch).encode())
            if stdin is not None:
                if stdin:
                    ws.send(bytes([STDIN]) + stdin)
                ws.send(bytes([STDIN_CLOSE]))
            while True:
                message = ws.recv(timeout=120)
                assert isinstance(message, bytes), "every message must be binary"
                sizes.append(len(message))
                if message[0] == STDOUT:
                    out += message[1:]
                    if output is not None:
                        output.set()
                elif message[0] == STDERR:
                    err += message[1:]
                elif message[0] == EXIT:
                    return ExecResult(bytes(out), bytes(err), json.loads(message[1:]), sizes)

    def finish(self, sandbox_id: str) -> dict[str, Any]:
        response = self.api.post(f"{self.base}/{sandbox_id}/finish")
        assert response.status_code == 202, response.text
        return self.wait(sandbox_id)

    def cancel(self, sandbox_id: str) -> dict[str, Any]:
        response = self.api.delete(f"{self.base}/{sandbox_id}")
        assert response.status_code == 202, response.text
        return self.wait(sandbox_id)
