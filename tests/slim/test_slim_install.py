"""tilde-core + tilde-data installed alone, from their wheels, into a fresh virtual environment.

This proves the data layer works without the rest of the SDK: nothing from compute, admin, the facade or the
server is needed (or installed), and none of their heavy dependencies come along.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tilde.server import LocalServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SLIM_DISTRIBUTIONS = ("tilde-core", "tilde-data")
# Their runtime dependencies, from the package registry.
REGISTRY_DEPENDENCIES = ("httpx>=0.25,<1.0", "pluggy>=1.3", "pyyaml>=5.1")
MUST_BE_ABSENT = (
    "websockets",
    "click",
    "starlette",
    "uvicorn",
    "tilde.compute",
    "tilde.admin",
    "tilde.server",
)


def _run(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, cwd=cwd, env=env)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(package_dir: Path, out_dir: Path) -> None:
    hatch = shutil.which("hatch")
    if hatch is not None:
        _run([hatch, "build", "-t", "wheel", str(out_dir)], cwd=package_dir)
    else:
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out_dir), str(package_dir)])


@pytest.fixture(scope="module")
def slim_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The interpreter of a fresh venv holding only tilde-core, tilde-data and their dependencies."""
    base = tmp_path_factory.mktemp("slim")
    wheels = base / "wheels"
    for name in SLIM_DISTRIBUTIONS:
        _build_wheel(ROOT / "packages" / name, wheels)
    assert sorted(p.name.split("-")[0] for p in wheels.glob("*.whl")) == ["tilde_core", "tilde_data"]

    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, *REGISTRY_DEPENDENCIES])
    _run([*pip, "--no-index", "--find-links", str(wheels), *SLIM_DISTRIBUTIONS])
    yield python
    shutil.rmtree(base, ignore_errors=True)


def _clean_env(**extra: str) -> dict[str, str]:
    # Nothing from the workspace environment may leak into the slim interpreter's import path.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "TILDE_"))}
    env.update(extra)
    return env


def test_only_the_slim_distributions_are_installed(slim_python: Path) -> None:
    script = textwrap.dedent(
        f"""
        import importlib.util, json
        import tilde.core, tilde.data

        def present(name):
            try:
                return importlib.util.find_spec(name) is not None
            except ModuleNotFoundError:
                return False

        print(json.dumps({{
            "absent_checked": {list(MUST_BE_ABSENT)!r},
            "present": [m for m in {list(MUST_BE_ABSENT)!r} if present(m)],
            "data_version": tilde.data.__version__,
            "data_file": tilde.data.__file__,
            "facade": present("tilde._composed"),
        }}))
        """
    )
    result = _run([str(slim_python), "-c", script], env=_clean_env())
    report = json.loads(result.stdout)
    assert report["present"] == []
    assert report["facade"] is False
    import tilde.data

    assert report["data_version"] == tilde.data.__version__
    # Imported from the venv, not from the source tree.
    assert str(slim_python.parent.parent) in report["data_file"]


def test_session_round_trip_from_the_slim_install(
    slim_python: Path, server: LocalServer, repo_path: str
) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        from tilde.data import Client

        with Client() as client:
            repo = client.repository(sys.argv[1])
            with repo.session() as session:
                session.objects.put("slim/hello.txt", b"from a slim install")
                commit_id = session.commit("slim round trip")
            commit = repo.commits.get(commit_id)
            with commit.objects.get("slim/hello.txt") as reader:
                body = reader.read().decode()
            print(json.dumps({"commit_id": commit_id, "message": commit.message, "body": body}))
        """
    )
    env = _clean_env(TILDE_API_KEY=server.api_key, TILDE_ENDPOINT_URL=server.endpoint_url)
    result = _run([str(slim_python), "-c", script, repo_path], env=env)
    report = json.loads(result.stdout)
    assert report["body"] == "from a slim install"
    assert report["message"] == "slim round trip"
    assert report["commit_id"]
