"""Runtime settings (``ServerConfig.sandbox``) on a server of their own: images, mount mode, limits."""

from __future__ import annotations

import json
import os
import time
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
        "retained_sandboxes": 4,
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


def test_memory_limit_applies(custom: Sandboxes, custom_server: LocalServer) -> None:
    script = "try:\n    b = bytearray(2 * 1024**3)\nexcept MemoryError:\n    print('limited')\n"
    status, log = custom.run_once(["python3", "-c", script], image="host-root")
    if "memory" in custom_server.app.state.runtime.cgroups.controllers:
        # The memory cgroup lets the allocation reserve but not fill 2 GiB.
        assert (status["status"], status["status_reason"]) == ("failed", "oom"), log
    else:
        # Without one, RLIMIT_AS refuses the reservation itself.
        assert status["status"] == "done", log
        assert log == "limited\n"


_LAYER_DIRS = ("upper", "work", "merged", "run", "lower")


def test_layers_are_cleaned_up(custom: Sandboxes, custom_server: LocalServer) -> None:
    status, _ = custom.run_once("echo x > x.txt", image="host-root")
    assert status["status_reason"] == "committed"
    sandbox_dir = Path(custom_server.data_dir) / "sandboxes"

    def leftovers() -> list[str]:
        # Other sandboxes of this server may be tearing down while we look: a directory can vanish mid-walk.
        found = []
        for root, dirs, _ in os.walk(sandbox_dir):
            depth = len(Path(root).relative_to(sandbox_dir).parts)
            found += [f"{root}/{d}" for d in dirs if depth == 1 and d in _LAYER_DIRS]
            if depth >= 1:
                dirs.clear()
        return found

    deadline = time.monotonic() + 30
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers() == []


def test_sandboxes_outlive_a_server_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    def client(server: LocalServer) -> httpx.Client:
        return httpx.Client(
            base_url=server.endpoint_url + "/api/v1",
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=60,
        )

    with LocalServer(data_dir=data_dir) as first, client(first) as api:
        assert api.post("/organizations", json={"name": "keep", "display_name": "Keep"}).status_code == 201
        assert api.post("/organizations/keep/repositories", json={"name": "repo"}).status_code == 201
        sandboxes = Sandboxes(api, "keep/repo", "", first.api_key)
        done, log = sandboxes.run_once("echo kept; echo x > x.txt")
        assert done["status_reason"] == "committed", log
        finished = sandboxes.create(command=["true"])
        sandboxes.wait(finished)
        service = sandboxes.service()
    # Pretend the server died while `finished` was still running.
    state_file = data_dir / "sandboxes" / finished / "state.json"
    state = json.loads(state_file.read_text())
    state["status"], state["status_reason"] = "running", ""
    state_file.write_text(json.dumps(state))

    with LocalServer(data_dir=data_dir) as second, client(second) as api:
        sandboxes = Sandboxes(api, "keep/repo", "", second.api_key)
        listed = [item["id"] for item in api.get(sandboxes.base, params={"amount": 10}).json()["results"]]
        assert len(listed) == 3
        assert sandboxes.status(service)["status"] == "cancelled"
        lost = sandboxes.status(finished)
        assert (lost["status"], lost["status_reason"]) == ("failed", "sandbox_lost")
        committed = sandboxes.status(listed[0])
        assert committed["status_reason"] == "committed"
        assert sandboxes.logs(listed[0]) == "kept\n"


def test_only_the_newest_finished_sandboxes_are_kept(custom: Sandboxes) -> None:
    ids = []
    for _ in range(6):
        ids.append(custom.create(command=["true"], image="host-root"))
        custom.wait(ids[-1])
    # The oldest are forgotten before the next one reports its end, so no poll is needed.
    gone = [i for i in ids if custom.api.get(f"{custom.base}/{i}/status").status_code == 404]
    assert gone == ids[:2]
    assert all(custom.status(i)["status"] == "done" for i in ids[-4:])
