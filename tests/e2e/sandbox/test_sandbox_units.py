"""Pure pieces of the sandbox runtime, without a server: validation, egress policy, change collection, status
long poll."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tilde.server.errors import ApiError
from tilde.server.sandbox import cgroups
from tilde.server.sandbox.egress import EgressPolicy, parse_egress
from tilde.server.sandbox.layers import LowerFile, LowerIndex, collect_changes
from tilde.server.sandbox.limits import disk_usage, parse_resources, private_tmp
from tilde.server.sandbox.record import SandboxRecord
from tilde.server.sandbox.settings import SandboxSettings
from tilde.server.sandbox.spec import SandboxSpec, parse_spec

pytestmark = pytest.mark.sandbox


def spec(**body: object) -> SandboxSpec:
    return parse_spec({"image": "img", "command": ["true"], **body}, default_timeout=60, max_timeout=3600)


def test_spec_defaults_and_normalisation() -> None:
    parsed = parse_spec(
        {"image": " python:3.12 ", "command": "echo hi"}, default_timeout=60, max_timeout=None
    )
    assert parsed.image == "python:3.12"
    assert parsed.command == ["sh", "-c", "echo hi"]
    assert (parsed.mode, parsed.mountpoint, parsed.path_prefix, parsed.timeout_seconds) == (
        "one-shot",
        "/sandbox",
        "",
        60,
    )
    assert spec(path_prefix="/data/raw/").path_prefix == "data/raw/"
    assert spec(mountpoint="/mnt/./x/").mountpoint == "/mnt/x"
    service = parse_spec(
        {"image": "i", "mode": "service", "command": ["ignored"]}, default_timeout=9, max_timeout=5
    )
    assert (service.command, service.timeout_seconds) == (None, 5)


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "interactive"},
        {"timeout_seconds": 7200},
        {"timeout_seconds": 1.5},
        {"timeout_seconds": True},
        {"mountpoint": "/"},
        {"mountpoint": "/proc/x"},
        {"mountpoint": "relative"},
        {"mountpoint": "/a/../etc"},
        {"env_vars": {"BAD=NAME": "x"}},
        {"command": ["ok", 3]},
        {"network": "yes"},
        {"run_as": {"type": "user", "id": "x"}},
        {"egress": {"allow": "example.com"}},
        {"egress": {"allow": ["http://example.com"]}},
    ],
)
def test_spec_rejections(body: dict[str, object]) -> None:
    with pytest.raises(ApiError) as raised:
        spec(**body)
    assert raised.value.status == 400


def test_egress_policy_matching() -> None:
    policy = parse_egress({"allow": ["pypi.org", "*.pythonhosted.org", "localhost:8080"]})
    assert isinstance(policy, EgressPolicy)
    assert policy.permits("pypi.org", 443)
    assert policy.permits("PyPI.org.", 80)
    assert policy.permits("files.pythonhosted.org", 443)
    assert not policy.permits("pythonhosted.org.evil.com", 443)
    assert policy.permits("localhost", 8080)
    assert not policy.permits("localhost", 8081)
    assert not policy.permits("example.com", 443)
    assert parse_egress(None) is None


def test_settings_reject_unknown_keys_and_root() -> None:
    assert SandboxSettings.from_mapping(None).uid == 1000
    with pytest.raises(ValueError, match="unknown"):
        SandboxSettings.from_mapping({"strict_image": True})
    with pytest.raises(ValueError, match="uid"):
        SandboxSettings.from_mapping({"uid": 0})


def test_rlimits_stand_in_only_for_missing_cgroups() -> None:
    settings = SandboxSettings.from_mapping({})
    limits = parse_resources(None, settings)
    assert (limits.memory_bytes, limits.processes, limits.disk_bytes) == (4 * 1024**3, 1024, 10 * 1024**3)
    fallback = limits.rlimits(settings, cgroup_controllers=frozenset())
    assert fallback["RLIMIT_AS"] == 4 * 1024**3
    assert fallback["RLIMIT_NPROC"] == 1024
    assert fallback["RLIMIT_FSIZE"] == 10 * 1024**3
    assert fallback["RLIMIT_NOFILE"] == 4096
    grouped = limits.rlimits(settings, cgroup_controllers=frozenset({"memory", "pids"}))
    assert "RLIMIT_AS" not in grouped
    assert "RLIMIT_NPROC" not in grouped
    unlimited = parse_resources(None, SandboxSettings.from_mapping({"memory_limit_bytes": None}))
    assert "RLIMIT_AS" not in unlimited.rlimits(settings, cgroup_controllers=frozenset())


def test_cgroup_paths_from_proc_files() -> None:
    mountinfo = (
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "35 31 0:32 /outer /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    mounts = cgroups._mounts(mountinfo)
    assert [(m[0], m[2]) for m in mounts] == [
        ("/sys/fs/cgroup/cpu", "cgroup"),
        ("/sys/fs/cgroup/memory", "cgroup"),
        ("/sys/fs/cgroup/unified", "cgroup2"),
    ]
    own = cgroups._own_paths("4:memory:/outer/api/x\n1:cpu,cpuacct:/\n0::/user.slice\n")
    assert own == {"memory": "/outer/api/x", "cpu": "/", "cpuacct": "/", "": "/user.slice"}
    assert cgroups._join("/sys/fs/cgroup/memory", "/outer", own["memory"]) == Path(
        "/sys/fs/cgroup/memory/api/x"
    )
    joined = cgroups.join_argv(cgroups.SandboxCgroup(1, {"pids": Path("/cg/p"), "cpu": Path("/cg/c")}), ["a"])
    assert joined[:2] == ["/bin/sh", "-c"]
    assert joined[3:] == ["sh", "2", "/cg/c/cgroup.procs", "/cg/p/cgroup.procs", "a"]
    assert cgroups.join_argv(None, ["a"]) == ["a"]


def test_private_tmp_replaces_the_tmpfs() -> None:
    options = ["--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/etc/x"]
    assert private_tmp(options, "/d/tmp") == [
        "--dev",
        "/dev",
        "--bind",
        "/d/tmp",
        "/tmp",
        "--tmpfs",
        "/etc/x",
    ]


def test_disk_usage_counts_hard_links_once_and_opens_hidden_dirs(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 65536)
    os.link(tmp_path / "a", tmp_path / "b")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "c").write_bytes(b"y" * 65536)
    hidden.chmod(0)
    try:
        used = disk_usage([str(tmp_path)])
    finally:
        hidden.chmod(0o700)
    assert 2 * 65536 <= used < 3 * 65536


def _lower(files: dict[str, bytes]) -> LowerIndex:
    import hashlib

    return LowerIndex(
        files={
            path: LowerFile(len(data), hashlib.sha256(data).hexdigest(), "text/plain")
            for path, data in files.items()
        }
    )


#: The opaque-directory marker overlayfs writes: trusted.* as root, user.* in unprivileged (userxattr) mounts.
OPAQUE_XATTR = "trusted.overlay.opaque" if os.geteuid() == 0 else "user.overlay.opaque"


def test_collect_changes_from_an_upper_layer(tmp_path: Path) -> None:
    lower = _lower({"same.txt": b"same", "edit.txt": b"old", "gone.txt": b"x", "dir/a": b"a", "dir/b": b"b"})
    upper = tmp_path / "upper"
    (upper / "dir").mkdir(parents=True)
    (upper / "same.txt").write_bytes(b"same")  # copied up, unchanged
    (upper / "edit.txt").write_bytes(b"new")
    (upper / "new.txt").write_bytes(b"n")
    # A whiteout; any user may create one (Linux 5.8 and later), as unprivileged overlay mounts do.
    os.mknod(upper / "gone.txt", 0o600 | 0o020000, os.makedev(0, 0))
    os.mknod(upper / "dir" / "a", 0o600 | 0o020000, os.makedev(0, 0))
    (upper / "link").symlink_to("same.txt")
    changes = collect_changes(str(upper), lower)
    assert [rel for rel, _ in changes.writes] == ["edit.txt", "new.txt"]
    assert changes.deletes == ["dir/a", "gone.txt"]
    assert changes.ignored == ["link"]


def test_collect_changes_of_an_opaque_directory(tmp_path: Path) -> None:
    lower = _lower({"dir/a": b"a", "dir/sub/b": b"b", "dir/keep": b"k"})
    upper = tmp_path / "upper"
    (upper / "dir").mkdir(parents=True)
    os.setxattr(upper / "dir", OPAQUE_XATTR, b"y")
    (upper / "dir" / "keep").write_bytes(b"k")  # re-created identical: neither written nor deleted
    changes = collect_changes(str(upper), lower)
    assert changes.writes == []
    assert changes.deletes == ["dir/a", "dir/sub/b"]


def test_status_long_poll_sees_a_change_made_while_it_looks(tmp_path: Path) -> None:
    """A status change from another thread between the long poll's look and its wait still wakes it."""

    class Racing(SandboxRecord):
        fired = False

        def __getattribute__(self, name: str) -> Any:
            value = super().__getattribute__(name)
            if name == "status" and not Racing.fired:
                # The runtime ends the sandbox just after the poll has read "starting".
                Racing.fired = True
                thread = threading.Thread(target=self.set_status, args=("done", ""))
                thread.start()
                thread.join()
            return value

    record = Racing(
        id="s", org_name="o", repo=None, principal=None, actor=None, spec=spec(), directory=tmp_path
    )

    async def poll() -> float:
        started = time.monotonic()
        await record.wait_while(None, 10)
        return time.monotonic() - started

    assert asyncio.run(poll()) < 5
    assert record.status == "done"
