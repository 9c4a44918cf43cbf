"""Helpers of the tests that run sandboxes on OCI images.

A registry on loopback, a server whose registry mirror is that registry, and sandbox calls over raw HTTP.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from oci_registry import run_registry

from tilde.server import LocalServer, ServerConfig


@contextlib.contextmanager
def registry_address(root: Path) -> Iterator[str]:
    """A registry on loopback (`oci_registry.run_registry`); yields its ``host:port``."""
    with run_registry(root) as registry:
        yield registry.url.removeprefix("http://")


@contextlib.contextmanager
def image_server(data_dir: Path, mirror: str, **sandbox: Any) -> Iterator[LocalServer]:
    """A server whose image store sends ``docker.io`` pulls to the registry ``mirror`` (``host:port``).

    The host's root filesystem is off unless a test turns it on (``allow_host_image``).
    """
    settings: dict[str, Any] = {"allow_host_image": False, "images": {}, **sandbox}
    config = ServerConfig(data_dir=data_dir, sandbox=settings, registry_mirrors=(f"http://{mirror}",))
    with LocalServer(config=config) as server:
        yield server


@dataclass
class Repo:
    """One repository of an image server, driven over raw HTTP."""

    api: httpx.Client
    path: str

    @property
    def base(self) -> str:
        org, name = self.path.split("/")
        return f"/organizations/{org}/repositories/{name}"

    @classmethod
    @contextlib.contextmanager
    def create(cls, server: LocalServer) -> Iterator[Repo]:
        with httpx.Client(
            base_url=server.endpoint_url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=60,
        ) as api:
            org, repo = f"org-{uuid.uuid4().hex[:10]}", f"repo-{uuid.uuid4().hex[:10]}"
            assert api.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
            made = api.post(f"/organizations/{org}/repositories", json={"name": repo})
            assert made.status_code == 201, made.text
            yield cls(api, f"{org}/{repo}")

    def start(self, **body: Any) -> str:
        response = self.api.post(f"{self.base}/sandboxes", json=body)
        assert response.status_code == 201, response.text
        sandbox_id: str = response.json()["sandbox_id"]
        return sandbox_id

    def status(self, sandbox_id: str, **params: Any) -> dict[str, Any]:
        response = self.api.get(f"{self.base}/sandboxes/{sandbox_id}/status", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait(self, sandbox_id: str, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(sandbox_id, wait=30)
            if body["status"] not in ("starting", "running"):
                return body
            assert time.monotonic() < deadline, f"sandbox {sandbox_id} still {body}"

    def logs(self, sandbox_id: str) -> str:
        response = self.api.get(f"{self.base}/sandboxes/{sandbox_id}/logs/stdout")
        assert response.status_code == 200, response.text
        return response.text

    def run(self, **body: Any) -> tuple[dict[str, Any], str]:
        sandbox_id = self.start(**body)
        return self.wait(sandbox_id), self.logs(sandbox_id)

    def read(self, path: str) -> bytes:
        response = self.api.get(f"{self.base}/object", params={"path": path}, follow_redirects=True)
        assert response.status_code == 200, response.text
        return response.content
