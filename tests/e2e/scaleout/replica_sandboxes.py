"""Raw HTTP and ``/exec`` websockets to one replica of a cluster, for the sandboxes of one repository."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from cluster import ClusterServer
from websockets.sync.client import connect

__all__ = ["ReplicaSandboxes"]

#: Frame types of the ``/exec`` protocol this helper sends and reads.
LAUNCH, STDOUT, STDERR, EXIT = 0, 3, 4, 5


class ReplicaSandboxes:
    """One replica's view of a repository's sandboxes (requests go to that replica only).

    Args:
        cluster: The cluster.
        index: Which replica.
        repo_path: ``org/repo``.
        patience: Longest wait for a sandbox's status to change or a command to answer (seconds).

    """

    def __init__(
        self, cluster: ClusterServer, index: int, repo_path: str, *, patience: float = 180.0
    ) -> None:
        org, name = repo_path.split("/")
        self.url = cluster.replica_url(index)
        self.node_id = cluster.replicas[index].node_id
        self.token = cluster.api_key
        self.patience = patience
        self.api = httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
            follow_redirects=True,
        )
        self.repo = f"/organizations/{org}/repositories/{name}"
        self.base = f"{self.repo}/sandboxes"

    def close(self) -> None:
        """Close the HTTP client."""
        self.api.close()

    def create(self, **body: Any) -> str:
        """Create a sandbox (default image ``ubuntu:22.04``); return its id."""
        body.setdefault("image", "ubuntu:22.04")
        response = self.api.post(self.base, json=body)
        assert response.status_code == 201, response.text
        sandbox_id: str = response.json()["sandbox_id"]
        return sandbox_id

    def status(self, sandbox_id: str, **params: Any) -> dict[str, Any]:
        """Return the sandbox's status (``params``: ``wait``, ``while``)."""
        response = self.api.get(f"{self.base}/{sandbox_id}/status", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait(self, sandbox_id: str, *, while_: str | None = None) -> dict[str, Any]:
        """Long-poll the status until it leaves ``while_`` (default: until it is final)."""
        deadline = time.monotonic() + self.patience
        while True:
            params: dict[str, Any] = {"wait": 30}
            if while_:
                params["while"] = while_
            body = self.status(sandbox_id, **params)
            if (body["status"] != while_) if while_ else body["status"] not in ("starting", "running"):
                return body
            assert time.monotonic() < deadline, f"sandbox {sandbox_id} still {body}"

    def service(self) -> str:
        """Create a service sandbox and wait until it runs; return its id."""
        sandbox_id = self.create(mode="service")
        assert self.wait(sandbox_id, while_="starting")["status"] == "running"
        return sandbox_id

    def listing(self, amount: int) -> list[str]:
        """Return the ids of every sandbox of the repository, read in pages of ``amount``."""
        seen: list[str] = []
        after = None
        while True:
            params: dict[str, Any] = {"amount": amount}
            if after:
                params["after"] = after
            response = self.api.get(self.base, params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            seen += [item["id"] for item in page["results"]]
            if not page["pagination"]["has_more"]:
                return seen
            after = page["pagination"]["next_offset"]

    def exec(self, sandbox_id: str, command: str) -> tuple[bytes, bytes, dict[str, Any]]:
        """Run ``command`` through the ``/exec`` websocket; return its stdout, stderr and exit frame."""
        out, err = bytearray(), bytearray()
        ws_url = "ws://" + self.url.removeprefix("http://") + f"/api/v1{self.base}/{sandbox_id}/exec"
        with connect(
            ws_url, additional_headers={"Authorization": f"Bearer {self.token}"}, open_timeout=60
        ) as ws:
            ws.send(bytes([LAUNCH]) + json.dumps({"cmd": ["sh", "-c", command]}).encode())
            while True:
                message = ws.recv(timeout=self.patience)
                assert isinstance(message, bytes)
                if message[0] == STDOUT:
                    out += message[1:]
                elif message[0] == STDERR:
                    err += message[1:]
                elif message[0] == EXIT:
                    return bytes(out), bytes(err), json.loads(message[1:])
