"""The example auth plugin, installed for real into a throwaway virtual environment, is found and used.

The distribution under tests/plugins/tilde-auth-example and tilde-core are installed (as wheels built from
source) into a new venv; a short script in that venv then builds a Client and reports which token it sent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORE = ROOT / "packages" / "tilde-core"
PLUGIN = ROOT / "tests" / "plugins" / "tilde-auth-example"

SCRIPT = """
import json, httpx
from tilde.core import Client, ConfigurationError

seen = []
http = httpx.Client(transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200, json={})))
with Client(endpoint_url="http://tilde.test", http_client=http) as client:
    try:
        client._get_json("/organizations")
        outcome = {"source": client._credentials_source, "authorization": seen[0].headers["Authorization"]}
    except ConfigurationError:
        outcome = {"source": None, "authorization": None}
    names = [name for name, _ in client._plugin_manager.list_name_plugin()]
    outcome["loaded"] = sorted(name for name in names if not name.startswith("tilde.core"))
print(json.dumps(outcome))
"""


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=240, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


def _install(venv: Path) -> Path:
    """Create the venv and install tilde-core and the plugin into it; skip when no installer can work."""
    python = venv / "bin" / "python"
    uv = shutil.which("uv")
    targets = [str(CORE), str(PLUGIN)]
    if uv:
        made = _run([uv, "venv", "-q", "--python", sys.executable, str(venv)])
        if made.returncode == 0:
            # Offline first (the local cache usually has every wheel), then with the index.
            for extra in (["--offline"], []):
                done = _run([uv, "pip", "install", "-q", "--python", str(python), *extra, *targets])
                if done.returncode == 0:
                    return python
    shutil.rmtree(venv, ignore_errors=True)
    made = _run([sys.executable, "-m", "venv", str(venv)])
    if made.returncode != 0:
        pytest.skip(f"cannot create a virtual environment: {made.stderr[-500:]}")
    done = _run([str(python), "-m", "pip", "install", "-q", *targets])
    if done.returncode != 0:
        pytest.skip(f"cannot install into a virtual environment (offline?): {done.stderr[-500:]}")
    return python


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _install(tmp_path_factory.mktemp("auth-plugin") / "venv")


def _client_outcome(python: Path, tmp_path: Path, **env: str) -> dict[str, object]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TILDE_", "PYTHON", "VIRTUAL_ENV"))}
    clean.update(HOME=str(home), **env)
    result = _run([str(python), "-c", SCRIPT], env=clean, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    outcome: dict[str, object] = json.loads(result.stdout)
    return outcome


def test_installed_plugin_supplies_the_token(venv_python: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-plugin\n")
    outcome = _client_outcome(venv_python, tmp_path, TILDE_EXAMPLE_TOKEN_FILE=str(token_file))
    assert outcome == {
        "source": "example-token-file",
        "authorization": "Bearer tok-from-plugin",
        "loaded": ["auth-example"],
    }


def test_tilde_plugins_can_exclude_it(venv_python: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-plugin\n")
    for value in ("", "some-other-plugin"):
        outcome = _client_outcome(
            venv_python, tmp_path, TILDE_EXAMPLE_TOKEN_FILE=str(token_file), TILDE_PLUGINS=value
        )
        assert outcome == {"source": None, "authorization": None, "loaded": []}
    outcome = _client_outcome(
        venv_python, tmp_path, TILDE_EXAMPLE_TOKEN_FILE=str(token_file), TILDE_PLUGINS="auth-example"
    )
    assert outcome["authorization"] == "Bearer tok-from-plugin"


def test_a_static_key_still_wins_over_the_plugin(venv_python: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-plugin\n")
    outcome = _client_outcome(
        venv_python, tmp_path, TILDE_EXAMPLE_TOKEN_FILE=str(token_file), TILDE_API_KEY="tuk-env"
    )
    assert outcome["authorization"] == "Bearer tuk-env"
    assert outcome["source"] == "environment"
