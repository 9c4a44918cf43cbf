"""Ways out of a sandbox that must stay shut: mountpoints over the system, the agent, nested user namespaces,
and the system calls the seccomp filter refuses."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandbox_helpers import Sandboxes, put_objects

from tilde.server import LocalServer, ServerConfig
from tilde.server.sandbox import seccomp
from tilde.server.sandbox.preflight import sandbox_preflight
from tilde.server.sandbox.spec import parse_spec

pytestmark = pytest.mark.sandbox


@pytest.mark.parametrize(
    "mountpoint",
    [
        "//etc",
        "//usr",
        "/./etc",
        "/sandbox/../etc",
        "/sandbox/..",
        "/",
        "//",
        "/usr",
        "/usr/local/x",
        "/.tilde",
        "//.tilde",
        "/proc/x",
        "/run/tilde",
        "/tmp",
        "/dev/shm",
        "/opt",
        "/root",
        "/sandboxes",
        "/sandbox\n/etc",
        "/sandbox/\ud800",
        "/sandbox/" + "x" * 256,
    ],
)
def test_mountpoints_outside_the_allowed_roots_are_refused(sandboxes: Sandboxes, mountpoint: str) -> None:
    # Encoded here: JSON may carry a lone surrogate as an escape, which httpx's own encoder refuses.
    body = json.dumps({"image": "x", "command": ["true"], "mountpoint": mountpoint})
    response = sandboxes.api.post(sandboxes.base, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, (mountpoint, response.text)
    body = response.json()
    assert body["code"] == "invalid_sandbox"
    assert "mountpoint" in body["message"]
    assert set(body) >= {"message", "code", "request_id"}


def test_mountpoints_have_one_spelling() -> None:
    def canonical(value: str) -> str:
        return parse_spec(
            {"image": "x", "command": ["true"], "mountpoint": value}, default_timeout=60, max_timeout=None
        ).mountpoint

    assert canonical("//mnt//data/") == "/mnt/data"
    assert canonical("/sandbox/./x/.") == "/sandbox/x"
    assert canonical("/work") == "/work"
    assert canonical("/data/x") == "/data/x"


EVIL_AGENT = b"import sys\nprint('replaced agent ran')\nsys.exit(0)\n"


def test_repository_files_cannot_replace_the_agent(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes, service: Callable[..., str]
) -> None:
    put_objects(api, repo_path, {".tilde/agent.py": EVIL_AGENT, ".tilde/agent.json": b"{}"})
    # The places the agent lives are not mountpoints, whatever the prefix.
    for mountpoint in ("/.tilde", "//.tilde", "/run/tilde"):
        refused = sandboxes.api.post(
            sandboxes.base,
            json={"image": "x", "mode": "service", "mountpoint": mountpoint, "path_prefix": ".tilde/"},
        )
        assert refused.status_code == 400, (mountpoint, refused.text)
    # Mounted where it may be, the file is plain data and the real agent still answers.
    sid = service(path_prefix=".tilde/")
    result = sandboxes.exec(sid, "cat agent.py; echo ---; cat /.tilde/agent.py | head -1")
    assert result.exit_code == 0, result
    data, _, agent = result.stdout.partition(b"---\n")
    assert data == EVIL_AGENT
    assert agent.startswith(b'"""The in-sandbox agent')
    # ... and cannot be written from inside either.
    overwrite = sandboxes.exec(sid, "cp agent.py /.tilde/agent.py")
    assert overwrite.exit_code != 0
    assert sandboxes.exec(sid, "echo still here").stdout == b"still here\n"


def test_no_nested_user_namespaces(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service()
    for command in ("unshare -r true", "unshare -U true", "unshare -rm true"):
        result = sandboxes.exec(sid, command)
        assert result.exit_code != 0, (command, result)
    # Ordinary process creation (fork, threads, subprocess: clone without CLONE_NEWUSER) still works.
    ok = sandboxes.exec(
        sid,
        [
            "python3",
            "-c",
            "import subprocess, threading\n"
            "t = threading.Thread(target=print, args=('thread',))\n"
            "t.start()\n"
            "t.join()\n"
            "print(subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout.strip())",
        ],
    )
    assert (ok.exit_code, ok.stdout) == (0, b"thread\nchild\n"), ok


# System call numbers of the two architectures CI and users run on.
SYSCALLS = r"""
import ctypes, errno, json, os, platform
NUMBERS = {
    "x86_64": {"keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
               "userfaultfd": 323, "ptrace": 101, "mount": 165, "umount2": 166, "pivot_root": 155,
               "unshare": 272, "setns": 308, "open_by_handle_at": 304, "process_vm_readv": 310,
               "kexec_load": 246, "init_module": 175, "swapon": 167, "acct": 163, "fsopen": 430,
               "personality": 135},
    "aarch64": {"keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241,
                "userfaultfd": 282, "ptrace": 117, "mount": 40, "umount2": 39, "pivot_root": 41,
                "unshare": 97, "setns": 268, "open_by_handle_at": 265, "process_vm_readv": 270,
                "kexec_load": 104, "init_module": 105, "swapon": 224, "acct": 89, "fsopen": 430,
                "personality": 92},
}[platform.machine()]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ARGS = {
    "keyctl": (0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": (ctypes.c_char_p(b"user"), ctypes.c_char_p(b"k"), ctypes.c_char_p(b"v"), 1, -3),
    "request_key": (ctypes.c_char_p(b"user"), ctypes.c_char_p(b"k"), None, -3),
    "bpf": (0, 0, 0),
    "perf_event_open": (0, 0, -1, -1, 0),
    "userfaultfd": (0,),
    "ptrace": (16, 1, 0, 0),  # PTRACE_ATTACH to the sandbox's pid 1
    "mount": (ctypes.c_char_p(b"none"), ctypes.c_char_p(b"/tmp"), ctypes.c_char_p(b"tmpfs"), 0, None),
    "umount2": (ctypes.c_char_p(b"/tmp"), 0),
    "pivot_root": (ctypes.c_char_p(b"/tmp"), ctypes.c_char_p(b"/tmp")),
    "unshare": (0x10000000,),  # CLONE_NEWUSER
    "setns": (0, 0),
    "open_by_handle_at": (-100, None, 0),
    "process_vm_readv": (1, None, 0, None, 0, 0),
    "kexec_load": (0, 0, None, 0),
    "init_module": (None, 0, ctypes.c_char_p(b"")),
    "swapon": (ctypes.c_char_p(b"/tmp/none"), 0),
    "acct": (None,),
    "fsopen": (ctypes.c_char_p(b"tmpfs"), 0),
    "personality": (0x0040000,),  # ADDR_NO_RANDOMIZE
}
out = {}
for name, args in ARGS.items():
    ctypes.set_errno(0)
    result = libc.syscall(NUMBERS[name], *args)
    out[name] = errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())) if result == -1 else "ok"
current = libc.syscall(NUMBERS["personality"], 0xFFFFFFFF)
out["personality_query"] = "ok" if current != -1 else "failed"
print(json.dumps(out))
"""


def test_the_seccomp_filter_refuses_the_escape_surface(
    sandboxes: Sandboxes, service: Callable[..., str]
) -> None:
    # A request cannot turn the filter off: only the server's configuration can.
    sid = service(seccomp=False)
    result = sandboxes.exec(sid, ["python3", "-c", SYSCALLS])
    assert result.exit_code == 0, result
    out = json.loads(result.stdout)
    refused = {name: value for name, value in out.items() if name != "personality_query"}
    assert refused == dict.fromkeys(refused, "EPERM"), out
    assert out["personality_query"] == "ok"


def _own_server(data_dir: Path, settings: dict[str, Any]) -> Iterator[Sandboxes]:
    config = ServerConfig(data_dir=data_dir, sandbox=settings)
    with (
        LocalServer(config=config) as server,
        httpx.Client(
            base_url=server.endpoint_url + "/api/v1",
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=60,
        ) as api,
    ):
        org, repo = f"org-{uuid.uuid4().hex[:10]}", f"repo-{uuid.uuid4().hex[:10]}"
        assert api.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
        created = api.post(f"/organizations/{org}/repositories", json={"name": repo, "visibility": "private"})
        assert created.status_code == 201, created.text
        ws_base = server.endpoint_url.replace("http://", "ws://") + "/api/v1"
        yield Sandboxes(api, f"{org}/{repo}", ws_base, server.api_key)


@pytest.fixture(scope="module")
def unfiltered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxes]:
    """A server whose admin turned the filter off."""
    yield from _own_server(tmp_path_factory.mktemp("tilde-server-no-seccomp"), {"seccomp": False})


@pytest.fixture(scope="module")
def imaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxes]:
    """A server with a registered root filesystem (the host's own, which has /mnt, /home and /srv)."""
    yield from _own_server(tmp_path_factory.mktemp("tilde-server-image"), {"images": {"host-root": "/"}})


@pytest.mark.parametrize("mountpoint", ["/mnt/data", "/home/me/work", "/srv", "/work"])
def test_allowed_mountpoints_work_in_a_registered_image(imaged: Sandboxes, mountpoint: str) -> None:
    put_objects(imaged.api, imaged.repo_path, {"in.txt": b"input\n"})
    status, log = imaged.run_once("pwd; cat in.txt", image="host-root", mountpoint=mountpoint)
    assert status["status"] == "done", log
    assert log == f"{mountpoint}\ninput\n"


def test_the_admin_may_turn_the_filter_off(unfiltered: Sandboxes) -> None:
    # Only the keyring: without the filter, PTRACE_ATTACH to pid 1 for one would succeed and stop it.
    keyctl = SYSCALLS.replace("ARGS = {", 'ARGS = {"keyctl": (0, -3, 0)}\nUNUSED = {')
    status, log = unfiltered.run_once(["python3", "-c", keyctl])
    assert status["status"] == "done", log
    out = json.loads(log)
    # The kernel answers for itself (normally the session keyring's id) instead of the filter's EPERM.
    assert out["keyctl"] != "EPERM", out
    # Nested user namespaces stay off whatever the setting (bubblewrap's --disable-userns).
    status, log = unfiltered.run_once("unshare -r true && echo nested")
    assert "nested" not in log


def test_a_machine_without_libseccomp_is_reported(
    monkeypatch: pytest.MonkeyPatch, sandboxes: Sandboxes, tmp_path: Path
) -> None:
    real = importlib.import_module

    def without_pyseccomp(name: str, *args: Any) -> Any:
        if name == "pyseccomp":
            raise RuntimeError("Unable to find libseccomp")
        return real(name, *args)

    seccomp.compile_filter.cache_clear()
    monkeypatch.setattr(seccomp.importlib, "import_module", without_pyseccomp)
    try:
        problem = sandbox_preflight()
        assert problem is not None
        assert "libseccomp" in problem
        assert "seccomp to false" in problem
        refused = sandboxes.api.post(sandboxes.base, json={"image": "x", "command": ["true"]})
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "runtime_unavailable"
        assert "libseccomp" in refused.json()["message"]
    finally:
        monkeypatch.undo()
        seccomp.compile_filter.cache_clear()
    assert sandboxes.wait(sandboxes.create(command=["true"]))["status"] == "done"
