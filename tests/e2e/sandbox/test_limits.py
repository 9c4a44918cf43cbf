"""Resource limits under abuse: a fork bomb, a memory hog, a disk fill and an fd flood on a real server.

With cgroups (the server running as root in CI) the limits hold for all of a sandbox's processes together
and the status names the limit that ended it; without (the unprivileged pass) the per-process fallback is
asserted: what ``RLIMIT_*`` does enforce.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sandbox_helpers import Sandboxes, head_commit, list_objects, put_objects

from tilde.server import LocalServer, ServerConfig
from tilde.server.sandbox.cgroups import detect, join_argv

pytestmark = pytest.mark.sandbox

MiB = 1024**2
SETTINGS = {
    "memory_limit_bytes": 256 * MiB,
    "max_memory_limit_bytes": 512 * MiB,
    "disk_limit_bytes": 32 * MiB,
    "open_files_limit": 64,
    "process_limit": 4096,
    "max_process_limit": 8192,
    "default_timeout_seconds": 120,
    "max_timeout_seconds": 600,
}


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    data_dir = tmp_path_factory.mktemp("tilde-server-limits")
    with LocalServer(config=ServerConfig(data_dir=data_dir, sandbox=SETTINGS)) as server:
        yield server


@pytest.fixture
def limited(limited_server: LocalServer) -> Iterator[Sandboxes]:
    with httpx.Client(
        base_url=limited_server.endpoint_url + "/api/v1",
        headers={"Authorization": f"Bearer {limited_server.api_key}"},
        timeout=60,
    ) as api:
        org = f"org-{uuid.uuid4().hex[:10]}"
        assert api.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
        repo = f"repo-{uuid.uuid4().hex[:10]}"
        response = api.post(f"/organizations/{org}/repositories", json={"name": repo})
        assert response.status_code == 201, response.text
        ws_base = limited_server.endpoint_url.replace("http://", "ws://") + "/api/v1"
        yield Sandboxes(api, f"{org}/{repo}", ws_base, limited_server.api_key)


def controllers(server: LocalServer) -> frozenset[str]:
    """The cgroup controllers the server's sandboxes get (empty: the per-process fallback)."""
    found: frozenset[str] = server.app.state.runtime.cgroups.controllers
    return found


def user_tasks() -> int:
    """Processes and threads of this user: all of them count against ``RLIMIT_NPROC``."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == os.geteuid():
                    count += len(os.listdir(entry / "task"))
            except OSError:
                continue
    return count


def assert_healthy(sandboxes: Sandboxes) -> None:
    """A later request works and a new sandbox runs to its end."""
    assert sandboxes.api.get("/organizations").status_code == 200
    status, log = sandboxes.run_once("echo alive")
    assert (status["status"], status["status_reason"]) == ("done", "no_changes"), log
    assert log == "alive\n"


def test_cgroups_are_used_as_root(limited_server: LocalServer) -> None:
    found = controllers(limited_server)
    if os.geteuid() == 0:
        assert {"memory", "pids", "cpu"} <= found
    else:
        # An unprivileged server may not create cgroups: the documented fallback (rlimits) applies.
        assert "memory" not in found
        assert "pids" not in found


FORKS = """
import os, sys, time
n = 0
while n < 20000:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    n += 1
print(n, flush=True)
sys.exit(3)
"""


def test_fork_bomb_is_held_at_the_process_limit(limited: Sandboxes, limited_server: LocalServer) -> None:
    cgroups = "pids" in controllers(limited_server)
    # Without a pids cgroup, RLIMIT_NPROC counts every process of the host user, the server's threads too.
    limit = 64 if cgroups else user_tasks() + 64
    sandbox_id = limited.create(command=["python3", "-c", FORKS], resources={"processes": limit})
    status = limited.wait(sandbox_id)
    forked = int(limited.logs(sandbox_id).split()[0])
    assert 0 < forked < limit
    if cgroups:
        # Every process of the sandbox counts, the agent's and bubblewrap's too: a handful.
        assert forked > limit - 16
        assert (status["status"], status["status_reason"], status["exit_code"]) == ("failed", "pids", 3)
        assert str(limit) in status["error_message"]
    else:
        assert (status["status"], status["status_reason"]) == ("errored", "exit_non_zero")
    assert_healthy(limited)


def marked_processes(marker: str) -> int:
    """Host processes whose command line holds ``marker`` (a sandbox's shell and every fork of it)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                count += marker.encode() in (entry / "cmdline").read_bytes()
            except OSError:
                continue
    return count


def test_shell_fork_bomb_is_contained_and_the_server_stays_healthy(
    limited: Sandboxes, limited_server: LocalServer
) -> None:
    # Without a pids cgroup, RLIMIT_NPROC counts every process of the host user: add the ones there are.
    budget = 128
    cgroups = "pids" in controllers(limited_server)
    limit = budget if cgroups else user_tasks() + budget
    marker = f"bomb-{uuid.uuid4().hex[:8]}"
    # Every process forks in a loop (a failed fork ends only that shell), so the bomb stays at its limit;
    # the main shell waits for a sleep started first, which needs no fork once the limit is reached.
    sandbox_id = limited.create(
        command=f": {marker}; bomb() {{ while :; do bomb & done; }}; sleep 120 & s=$!; bomb & wait $s",
        timeout_seconds=120,
        resources={"processes": limit, "cpus": 0.5},
    )
    try:
        limited.wait(sandbox_id, while_="starting")
        peak = 0
        for _ in range(100):
            peak = max(peak, marked_processes(marker))
            if peak >= budget - 32:
                break
            time.sleep(0.1)
        assert 0 < peak <= budget
        if cgroups:
            # In its own pids cgroup the bomb holds the limit, less the sandbox's own few processes.
            assert peak > budget // 2
        # While the bomb holds its limit, the server answers and another sandbox runs to its end.
        assert_healthy(limited)
    finally:
        assert limited.cancel(sandbox_id)["status"] == "cancelled"
    assert marked_processes(marker) == 0


HOG = "b = bytearray(150 * 1024 * 1024); import time; time.sleep(20)"


def test_processes_together_cannot_pass_the_memory_limit(
    limited: Sandboxes, limited_server: LocalServer
) -> None:
    if "memory" in controllers(limited_server):
        # Three 150 MiB processes at once against 256 MiB for the whole sandbox.
        command = f'for i in 1 2 3; do python3 -c "{HOG}" & done; wait'
        status, log = limited.run_once(command, timeout_seconds=60)
        assert (status["status"], status["status_reason"]) == ("failed", "oom"), log
        assert "256 MiB" in status["error_message"]
    else:
        # The fallback limits each process's address space: one 300 MiB allocation fails.
        script = "try:\n    b = bytearray(300 * 1024 * 1024)\nexcept MemoryError:\n    print('limited')\n"
        status, log = limited.run_once(["python3", "-c", script])
        assert status["status"] == "done", log
        assert log == "limited\n"
    assert_healthy(limited)


FILL = """
import time
for target in ("/sandbox/fill.bin", "/tmp/fill.bin"):
    with open(target, "wb") as f:
        for _ in range(20):
            f.write(bytes(1024 * 1024))
            f.flush()
print("written", flush=True)
time.sleep(60)
"""


def test_disk_fill_of_mount_and_tmp_is_killed_and_not_committed(limited: Sandboxes) -> None:
    put_objects(limited.api, limited.repo_path, {"keep.txt": b"kept\n"})
    before = head_commit(limited.api, limited.repo_path)
    # 20 MiB to the repository and 20 MiB to /tmp: each below the 32 MiB limit, together above it.
    status, _ = limited.run_once(["python3", "-c", FILL], timeout_seconds=90)
    assert (status["status"], status["status_reason"]) == ("failed", "disk_quota")
    assert "32 MiB" in status["error_message"]
    assert head_commit(limited.api, limited.repo_path) == before
    assert set(list_objects(limited.api, limited.repo_path)) == {"keep.txt"}
    assert_healthy(limited)


def test_one_file_cannot_pass_the_disk_limit(limited: Sandboxes) -> None:
    script = "import os\nwith open('/tmp/big', 'wb') as f:\n    f.write(bytes(40 * 1024 * 1024))\n"
    status, log = limited.run_once(["python3", "-c", script])
    # RLIMIT_FSIZE stops the write at the limit (the process gets SIGXFSZ) before any measurement could.
    assert status["status"] in ("errored", "failed"), log
    assert status["status_reason"] in ("exit_non_zero", "disk_quota")


FDS = """
import os
fds = []
try:
    while len(fds) < 100000:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as error:
    print(len(fds), error.strerror, flush=True)
"""


def test_fd_flood_is_held_at_the_open_files_limit(limited: Sandboxes) -> None:
    status, log = limited.run_once(["python3", "-c", FDS])
    assert status["status"] == "done", log
    opened, reason = log.split(" ", 1)
    assert 0 < int(opened) <= 64
    assert reason.strip() == "Too many open files"
    assert_healthy(limited)


def test_override_above_the_ceiling_is_refused(limited: Sandboxes) -> None:
    response = limited.api.post(
        limited.base, json={"image": "x", "command": ["true"], "resources": {"memory_bytes": 1024 * MiB}}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_sandbox"
    assert "resources.memory_bytes" in body["message"]
    assert "ceiling (536870912)" in body["message"]
    assert body["request_id"]
    too_long = {"image": "x", "command": ["true"], "timeout_seconds": 601}
    response = limited.api.post(limited.base, json=too_long)
    assert response.status_code == 400, response.text
    assert "timeout_seconds (601) exceeds this server's ceiling (600)" in response.json()["message"]
    for bad in ({"processes": 0}, {"disk_bytes": "1G"}, {"cpus": True}, {"swap": 1}, [1]):
        response = limited.api.post(limited.base, json={"image": "x", "command": ["true"], "resources": bad})
        assert response.status_code == 400, (bad, response.text)


def test_effective_limits_are_shown(limited: Sandboxes) -> None:
    sandbox_id = limited.create(command=["true"], resources={"memory_bytes": 300 * MiB, "cpus": 0.5})
    limited.wait(sandbox_id)
    shown = limited.api.get(f"{limited.base}/{sandbox_id}").json()["resources"]
    assert shown == {
        "memory_bytes": 300 * MiB,
        "processes": 4096,
        "disk_bytes": 32 * MiB,
        "open_files": 64,
        "cpus": 0.5,
    }


def test_cgroups_are_removed_when_sandboxes_end(limited: Sandboxes, limited_server: LocalServer) -> None:
    cgroups = limited_server.app.state.runtime.cgroups
    sandbox_id = limited.service(resources={"memory_bytes": 300 * MiB, "processes": 100, "cpus": 0.5})
    dirs = [base / sandbox_id for base in cgroups.bases.values()]
    assert all(d.is_dir() for d in dirs)
    if cgroups.version == 1:
        own = {name: base / sandbox_id for name, base in cgroups.bases.items()}
        assert (own["memory"] / "memory.limit_in_bytes").read_text() == f"{300 * MiB}\n"
        assert (own["pids"] / "pids.max").read_text() == "100\n"
        assert (own["cpu"] / "cpu.cfs_quota_us").read_text() == "50000\n"
    elif cgroups.version == 2:
        assert (dirs[0] / "memory.max").read_text() == f"{300 * MiB}\n"
        assert (dirs[0] / "pids.max").read_text() == "100\n"
    result = limited.exec(sandbox_id, "sleep 100 & echo started")
    assert (result.stdout, result.exit_code) == (b"started\n", 0), result.stderr
    limited.cancel(sandbox_id)
    assert [d for d in dirs if d.exists()] == []


def test_cgroups_left_by_a_crash_are_swept_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    found = detect(data_dir)
    if not found.controllers:
        # No cgroups to leave behind: the server starts on the per-process fallback and says so.
        assert found.describe() == "no writable cgroups: per-process resource limits only"
        with LocalServer(data_dir=data_dir) as server:
            assert server.app.state.runtime.cgroups.controllers == frozenset()
        return
    # What a killed server leaves: a sandbox's cgroups with a process still in them.
    crashed = found.create("crashed-sandbox")
    process = subprocess.Popen(join_argv(crashed, ["sleep", "120"]))
    try:
        while process.pid not in crashed.pids():
            assert process.poll() is None
            time.sleep(0.01)
        with LocalServer(data_dir=data_dir):
            assert process.wait(timeout=30) == -signal.SIGKILL
            assert [d for d in crashed.dirs.values() if d.exists()] == []
    finally:
        process.kill()
        process.wait()


def test_limits_are_kept_across_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for attempt in range(2):
        with (
            LocalServer(data_dir=data_dir) as server,
            httpx.Client(
                base_url=server.endpoint_url + "/api/v1",
                headers={"Authorization": f"Bearer {server.api_key}"},
                timeout=60,
            ) as api,
        ):
            sandboxes = Sandboxes(api, "keep/repo", "", server.api_key)
            if attempt == 0:
                assert api.post("/organizations", json={"name": "keep"}).status_code == 201
                assert api.post("/organizations/keep/repositories", json={"name": "repo"}).status_code == 201
                sandbox_id = sandboxes.create(command=["true"], resources={"processes": 77})
                sandboxes.wait(sandbox_id)
            shown = api.get(f"{sandboxes.base}/{sandbox_id}").json()["resources"]
            assert shown["processes"] == 77
            assert shown["memory_bytes"] == 4 * 1024**3


def test_sdk_passes_resources(limited: Sandboxes, limited_server: LocalServer) -> None:
    from tilde.compute import Client

    with Client(endpoint_url=limited_server.endpoint_url, api_key=limited_server.api_key) as client:
        repo = client.repository(limited.repo_path)
        sandbox = repo.sandboxes.create(image="x", command="true", resources={"memory_bytes": 100 * MiB})
        sandbox.wait()
    shown = limited.api.get(f"{limited.base}/{sandbox.id}").json()["resources"]
    assert shown["memory_bytes"] == 100 * MiB
