"""Sandboxes on OCI images: the image's files, environment, user and entrypoint, not the host's.

One registry (Debian's ``docker-registry`` on loopback) holds the minimal test image of ``tests/oci_images``
as ``library/mini:latest``; the server's registry mirror points there, so ``mini`` resolves as
``docker.io/library/mini:latest`` the way container tools resolve it.
"""

from __future__ import annotations

import contextlib
import http.server
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from oci_images import MINIMAL_USER, minimal_image, push
from oci_registry import RunningRegistry, build_image, entry, layer, push_image, run_registry
from run_support import Repo, image_server

from tilde.server import LocalServer

pytestmark = pytest.mark.sandbox

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def running_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as running:
        push(minimal_image(), f"{running.url.removeprefix('http://')}/library/mini:latest")
        yield running


@pytest.fixture(scope="module")
def registry(running_registry: RunningRegistry) -> str:
    """The registry's ``host:port``."""
    return running_registry.url.removeprefix("http://")


@pytest.fixture(scope="module")
def server(registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    settings = {"default_image": "mini", "disk_limit_bytes": 16 * MiB}
    with image_server(tmp_path_factory.mktemp("image-server"), registry, **settings) as srv:
        yield srv


@pytest.fixture
def repo(server: LocalServer) -> Iterator[Repo]:
    with Repo.create(server) as made:
        yield made


def test_without_a_command_the_image_entrypoint_runs_with_its_env_workdir_and_user(repo: Repo) -> None:
    status, log = repo.run(image="mini")
    assert (status["status"], status["exit_code"]) == ("done", 0), (status.get("error_message"), log)
    assert log.splitlines() == [
        "hello from the image",  # Env
        "/app",  # WorkingDir
        str(MINIMAL_USER[0]),  # User "app", from the image's /etc/passwd
        "working directory of the image",  # a file of the image, read relative to WorkingDir
    ]
    assert "docker.io/library/mini:latest@sha256:" in status["image_note"]


def test_a_command_runs_at_the_mountpoint_on_the_image_files_not_the_hosts(repo: Repo) -> None:
    script = (
        "pwd; cat /etc/image-release; id -u; id -g; echo $GREETING; "
        "ls /usr 2>/dev/null || echo no-usr; "  # the host's /usr (and its python3) is not there
        "cat /removed.txt 2>/dev/null || echo removed-by-a-later-layer; "
        "ls /olddir; "
        "echo result > result.txt"
    )
    status, log = repo.run(image="mini", command=["sh", "-c", script])
    assert (status["status"], status["status_reason"]) == ("done", "committed"), (status, log)
    assert log.splitlines() == [
        "/sandbox",
        "tilde minimal test image",
        str(MINIMAL_USER[0]),
        str(MINIMAL_USER[1]),
        "hello from the image",
        "no-usr",
        "removed-by-a-later-layer",
        "new.txt",  # the second layer's opaque directory hides the first layer's hidden.txt
    ]
    assert repo.read("result.txt") == b"result\n"


def test_writes_outside_the_repository_work_and_vanish_with_the_sandbox(repo: Repo) -> None:
    status, log = repo.run(
        image="mini", command=["sh", "-c", "echo installed > /bin/tool && cat /bin/tool && touch /etc/x"]
    )
    assert (status["status"], status["status_reason"]) == ("done", "no_changes"), (status, log)
    assert log == "installed\n"
    status, log = repo.run(
        image="mini", command=["sh", "-c", "test -e /bin/tool || echo no-tool; test -e /etc/x || echo no-x"]
    )
    assert status["status"] == "done", (status, log)
    assert log.splitlines() == ["no-tool", "no-x"]


def test_image_layers_are_never_written(repo: Repo, server: LocalServer) -> None:
    status, log = repo.run(image="mini", command=["sh", "-c", "echo changed > /etc/image-release"])
    assert status["status"] == "done", (status, log)
    layers = sorted(Path(server.config.data_dir, "images").rglob("etc/image-release"))
    assert layers, "the image's layers are in the server's image store"
    assert [layer.read_text() for layer in layers] == ["tilde minimal test image\n"]


def test_the_default_image_runs_when_the_request_names_none(repo: Repo) -> None:
    sandbox_id = repo.start(command=["sh", "-c", "cat /etc/image-release"])
    status = repo.wait(sandbox_id)
    assert status["status"] == "done", status
    assert repo.logs(sandbox_id) == "tilde minimal test image\n"
    full = repo.api.get(f"{repo.base}/sandboxes/{sandbox_id}").json()
    assert full["image"] == "mini"


def test_the_host_root_needs_the_admin_switch(repo: Repo) -> None:
    status, _ = repo.run(image="host", command=["true"])
    assert (status["status"], status["status_reason"]) == ("failed", "image_not_found")
    assert "allow_host_image" in status["error_message"]


def test_an_image_missing_from_the_registry_is_image_not_found(repo: Repo, registry: str) -> None:
    status, _ = repo.run(image=f"{registry}/library/no-such-image:1", command=["true"])
    assert (status["status"], status["status_reason"]) == ("failed", "image_not_found"), status
    assert "no-such-image" in status["error_message"]


def test_an_unreachable_registry_is_image_pull_failed(repo: Repo) -> None:
    from oci_registry import free_port

    status, _ = repo.run(image=f"127.0.0.1:{free_port()}/library/mini:latest", command=["true"])
    assert (status["status"], status["status_reason"]) == ("failed", "image_pull_failed"), status
    assert "pulling image" in status["error_message"]


def test_a_service_sandbox_execs_in_the_image(repo: Repo, server: LocalServer) -> None:
    from tilde.compute import Client

    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        handle = client.repository(repo.path)
        with handle.shell(image="mini") as sh:
            result = sh.run("pwd; id -u; echo $GREETING; cat /etc/image-release")
    assert result.exit_code == 0, result
    assert result.stdout.text().splitlines() == [
        "/sandbox",
        str(MINIMAL_USER[0]),
        "hello from the image",
        "tilde minimal test image",
    ]


def test_writes_to_system_paths_count_against_the_disk_limit(repo: Repo) -> None:
    # Copies of the C library (about 2 MiB each) into / until the 16 MiB limit stops the sandbox.
    script = "i=0; while true; do for f in /lib/*/libc.so.6; do cat $f > /big$i; done; i=$((i+1)); done"
    status, _ = repo.run(image="mini", command=["sh", "-c", script])
    assert (status["status"], status["status_reason"]) == ("failed", "disk_quota"), status


def test_an_image_without_entrypoint_or_cmd_needs_a_command(tmp_path: Path, registry: str) -> None:
    with image_server(tmp_path / "data", registry, allow_host_image=True) as srv, Repo.create(srv) as repo:
        status, _ = repo.run(image="host")
        assert (status["status"], status["status_reason"]) == ("failed", "no_command"), status
        assert "Entrypoint" in status["error_message"]
        status, log = repo.run(image="host", command=["sh", "-c", "echo on the host root"])
        assert status["status"] == "done", status
        assert "host root filesystem" in status["image_note"]
        assert log == "on the host root\n"


def test_an_invalid_image_reference_is_a_400(repo: Repo) -> None:
    response = repo.api.post(f"{repo.base}/sandboxes", json={"image": "Bad:Name", "command": ["true"]})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_sandbox"
    assert "invalid image reference" in response.json()["message"]


@contextlib.contextmanager
def stalled_registry() -> Iterator[str]:
    """A registry that answers ``/v2/`` and then never answers a manifest request; yields ``host:port``."""
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/v2/":
                release.wait()
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()


def test_a_sandbox_cancelled_while_its_image_is_pulled_ends_at_once(repo: Repo) -> None:
    with stalled_registry() as address:
        sandbox_id = repo.start(image=f"{address}/stalled/image:1", command=["true"])
        deadline = time.monotonic() + 60
        while repo.status(sandbox_id)["status_reason"] != "pulling":
            assert time.monotonic() < deadline, repo.status(sandbox_id)
            time.sleep(0.05)
        assert repo.api.delete(f"{repo.base}/sandboxes/{sandbox_id}").status_code == 202
        status = repo.wait(sandbox_id)
    assert (status["status"], status["status_reason"]) == ("cancelled", "cancelled_by_user"), status


def test_an_image_that_claims_the_agents_directory_is_refused(
    repo: Repo, running_registry: RunningRegistry, registry: str
) -> None:
    # /.tilde as a symlink into the repository would send the agent's mount points there (and into a commit).
    image = build_image([layer(entry(".tilde", kind=tarfile.SYMTYPE, linkname="sandbox"))], cmd=None)
    push_image(running_registry, "library/claims-agent", "1", image)
    status, _ = repo.run(image=f"{registry}/library/claims-agent:1", command=["true"])
    assert (status["status"], status["status_reason"]) == ("failed", "image_not_found"), status
    assert "reserves" in status["error_message"]


def test_the_hardening_holds_inside_an_image(repo: Repo) -> None:
    status, log = repo.run(image="mini", command=["sh", "-c", "cat /proc/self/status /proc/self/uid_map"])
    assert status["status"] == "done", (status, log)
    fields = dict(line.split(":\t", 1) for line in log.splitlines() if ":\t" in line)
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["CapBnd"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"  # the runtime's filter
    mappings = [line.split() for line in log.splitlines() if line.strip() and ":" not in line]
    assert mappings == [[str(MINIMAL_USER[0]), mappings[0][1], "1"]]  # one id, the image's user


def _member(repo: Repo, server: LocalServer, *policies: str) -> Repo:
    """A member of the repository's organization with built-in or inline policies attached."""
    org = repo.path.split("/")[0]
    name = f"user-{uuid.uuid4().hex[:10]}"
    token = server.create_api_key("user", name, org)
    members = repo.api.get(f"/organizations/{org}/members").json()["results"]
    user_id = next(m["user_id"] for m in members if m["username"] == name)
    builtin = {p["name"]: p["id"] for p in repo.api.get(f"/organizations/{org}/policies").json()["results"]}
    for policy in policies:
        policy_id = builtin.get(policy)
        if policy_id is None:
            body = {"name": f"p-{uuid.uuid4().hex[:10]}", "policy_text": policy}
            created = repo.api.post(f"/organizations/{org}/policies", json=body)
            assert created.status_code == 201, created.text
            policy_id = created.json()["id"]
        attach = {"principal_type": "user", "principal_id": user_id}
        attached = repo.api.post(f"/organizations/{org}/policies/{policy_id}/attachments", json=attach)
        assert attached.status_code == 201, attached.text
    headers = {"Authorization": f"Bearer {token}"}
    return Repo(httpx.Client(base_url=repo.api.base_url, headers=headers, timeout=60), repo.path)


def test_an_explicit_deny_of_the_network_action_closes_the_package_indexes(
    repo: Repo, server: LocalServer
) -> None:
    probe = ["sh", "-c", 'echo "${HTTP_PROXY:-no proxy}"']
    writer = _member(repo, server, "ReadWrite")
    name = repo.path.split("/")[1]
    closed = _member(repo, server, "ReadWrite", f'deny UseSandboxNetwork(repository="{name}")')
    try:
        status, log = writer.run(image="mini", command=probe)
        assert status["status"] == "done", status
        assert log.startswith("http://127.0.0.1:")  # the egress proxy, open to the package indexes
        status, log = closed.run(image="mini", command=probe)
        assert status["status"] == "done", status
        assert log == "no proxy\n"
    finally:
        writer.api.close()
        closed.api.close()
