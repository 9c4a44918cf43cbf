"""Runtime settings (``ServerConfig.sandbox``) on a server of their own: images, mount mode, limits."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sandbox_helpers import Sandboxes, diff, put_objects

from tilde.server import LocalServer, ServerConfig

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def custom_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    data_dir = tmp_path_factory.mktemp("tilde-server-settings")
    settings = {
        "strict_images": True,
        "images": {"host-root": "/", "missing": str(data_dir / "no-such-rootfs")},
        "mount_mode": "namespace",
        "memory_limit_bytes": 1024**3,
    }
    with LocalServer(config=ServerConfig(data_dir=data_dir, sandbox=settings)) as server:
        yield server


@pytest.fixture
def custom(custom_server: LocalServer) -> Iterator[Sandboxes]:
    with httpx.Client(
        base_url=custom_server.endpoint_url + "/api/v1",
        headers={"Authorization": f"Bearer {custom_server.api_key}"},
        timeout=60,
    ) as api:
        org = f"org-{uuid.uuid4().hex[:10]}"
        assert api.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
        repo = f"repo-{uuid.uuid4().hex[:10]}"
        response = api.post(
            f"/organizations/{org}/repositories", json={"name": repo, "visibility": "private"}
        )
        assert response.status_code == 201, response.text
        ws_base = custom_server.endpoint_url.replace("http://", "ws://") + "/api/v1"
        yield Sandboxes(api, f"{org}/{repo}", ws_base, custom_server.api_key)


def test_strict_mode_fails_unknown_images(custom: Sandboxes) -> None:
    status, _ = custom.run_once(["true"], image="ubuntu:22.04")
    assert (status["status"], status["status_reason"]) == ("failed", "image_not_found")
    assert "ubuntu:22.04" in status["error_message"]


def test_registered_image_with_a_missing_root_filesystem(custom: Sandboxes) -> None:
    status, _ = custom.run_once(["true"], image="missing")
    assert (status["status"], status["status_reason"]) == ("failed", "image_not_found")


def test_registered_root_filesystem_in_namespace_mount_mode(custom: Sandboxes) -> None:
    put_objects(custom.api, custom.repo_path, {"in.txt": b"input\n"})
    status, log = custom.run_once("cat in.txt; id -u; echo out > out.txt", image="host-root")
    assert status["status_reason"] == "committed", log
    assert "registered root filesystem /" in status["image_note"]
    assert log.splitlines()[0] == "input"
    assert log.splitlines()[1] != "0"
    assert diff(custom.api, custom.repo_path, status["commit_id"]) == {"out.txt": "added"}


def test_exec_in_namespace_mount_mode(custom: Sandboxes) -> None:
    sandbox_id = custom.service(image="host-root")
    try:
        result = custom.exec(sandbox_id, "echo hi; echo oops >&2; exit 2")
        assert (result.stdout, result.stderr, result.exit_code) == (b"hi\n", b"oops\n", 2)
    finally:
        custom.cancel(sandbox_id)


def test_memory_limit_applies(custom: Sandboxes) -> None:
    script = "try:\n    b = bytearray(2 * 1024**3)\nexcept MemoryError:\n    print('limited')\n"
    status, log = custom.run_once(["python3", "-c", script], image="host-root")
    assert status["status"] == "done", log
    assert log == "limited\n"


def test_layers_are_cleaned_up(custom: Sandboxes, custom_server: LocalServer) -> None:
    status, _ = custom.run_once("echo x > x.txt", image="host-root")
    assert status["status_reason"] == "committed"
    sandbox_dir = Path(custom_server.data_dir) / "sandboxes"
    leftovers = [p for p in sandbox_dir.glob("*/*") if p.name in ("upper", "work", "merged", "run", "lower")]
    assert leftovers == []
