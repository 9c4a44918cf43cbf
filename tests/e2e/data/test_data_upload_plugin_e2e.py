"""A third-party upload strategy, installed by entry point into a throwaway venv, takes over uploads.

The plugin distribution lives in ``tests/plugins/tilde-upload-example``. It is installed into a fresh virtual
environment (never into the shared one), which sees the workspace packages through a ``.pth`` file; a script
run with that venv's interpreter uploads to the real test server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tilde.data import Client

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "tilde-upload-example"

SCRIPT = """
import json, os
from tilde.data import Client, ReadOnlyObjects

# threshold 0: without the plugin every upload would be multipart.
with Client(upload_threshold=0, multipart_part_size=4) as client:
    repo = client.repository(os.environ["REPO"])
    strategies = [strategy.name for strategy in client._upload_strategies()]
    prefix = os.environ["PREFIX"]
    with repo.session() as session:
        session.objects.put(prefix + "small.txt", b"hello plugin")
        session.objects.put(prefix + "streamed.txt", iter([b"stream", b"ed"]))
        session.commit("via " + strategies[0])
    objects = ReadOnlyObjects(client, repo.org, repo.name)
    contents = {
        name: objects.get(prefix + name).read().decode() for name in ("small.txt", "streamed.txt")
    }
print(json.dumps({"strategies": strategies, "contents": contents}))
"""


@pytest.fixture(scope="module")
def plugin_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh venv with the example plugin installed and the workspace importable."""
    venv = tmp_path_factory.mktemp("plugin-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    python = venv / "bin" / "python"
    venv_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    workspace_site = sysconfig.get_paths()["purelib"]
    # addsitedir (unlike a bare path line) also processes the workspace's editable-install .pth files.
    Path(venv_site, "tilde_workspace.pth").write_text(f"import site; site.addsitedir({workspace_site!r})\n")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--quiet", str(PLUGIN_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    return python


def _run(python: Path, client: Client, repo_path: str, prefix: str, **env: str) -> dict[str, object]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TILDE_", "PYTHON", "VIRTUAL_ENV"))
    }
    environ.update(
        TILDE_ENDPOINT_URL=client._config.endpoint_url,
        TILDE_API_KEY=client._config.api_key or "",
        REPO=repo_path,
        PREFIX=prefix,
        **env,
    )
    done = subprocess.run(
        [str(python), "-c", SCRIPT], env=environ, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_plugin_is_not_in_the_shared_environment() -> None:
    assert importlib.util.find_spec("tilde_upload_example") is None


def test_entry_point_strategy_takes_over_uploads(
    plugin_python: Path, client: Client, repo_path: str, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    result = _run(plugin_python, client, repo_path, "on/", TILDE_UPLOAD_EXAMPLE_JOURNAL=str(journal))
    strategies = result["strategies"]
    assert isinstance(strategies, list)
    assert strategies[0] == "example-journal"
    assert {"single", "multipart"} <= set(strategies)
    assert result["contents"] == {"small.txt": "hello plugin", "streamed.txt": "streamed"}
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(entry["path"], entry["size"]) for entry in entries] == [
        ("on/small.txt", 12),
        ("on/streamed.txt", None),
    ]
    commit = next(iter(client.repository(repo_path).commits.list()))
    assert commit.message == "via example-journal"


def test_tilde_plugins_restricts_loading(
    plugin_python: Path, client: Client, repo_path: str, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    disabled = _run(
        plugin_python, client, repo_path, "off/", TILDE_PLUGINS="", TILDE_UPLOAD_EXAMPLE_JOURNAL=str(journal)
    )
    assert disabled["strategies"] == ["single", "multipart"]
    assert disabled["contents"] == {"small.txt": "hello plugin", "streamed.txt": "streamed"}
    assert not journal.exists()
    named = _run(
        plugin_python,
        client,
        repo_path,
        "named/",
        TILDE_PLUGINS="upload-example",
        TILDE_UPLOAD_EXAMPLE_JOURNAL=str(journal),
    )
    strategies = named["strategies"]
    assert isinstance(strategies, list)
    assert strategies[0] == "example-journal"
    assert len(journal.read_text().splitlines()) == 2
