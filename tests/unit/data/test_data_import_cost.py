"""``import tilde.data`` loads only what the import needs: modules a client needs later load with it.

The import-time benchmark (bench/bench_import.py) measures the effect; this pins the deferred imports.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Imported on first use: config file parsing, async client waits, plugin discovery and the User-Agent
#: version, batch archives, (before Python 3.13) the TypeVar-default backport, the batch upload strategy
#: and the capabilities document it reads (when a client builds its plugin manager), and an object
#: reader's range arithmetic (when a reader is made).
DEFERRED = (
    "yaml",
    "anyio",
    "importlib.metadata",
    "tarfile",
    "typing_extensions",
    "tilde.data.batch_uploads",
    "tilde.data._capabilities",
    "tilde.data._reader_window",
)


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(m for m in {DEFERRED!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


def test_import_tilde_data_defers_what_only_clients_use() -> None:
    assert _loaded_after("import tilde.data") == set()


@pytest.mark.parametrize(
    ("code", "needed"),
    [
        # A client reads the configuration file when there is one, and looks for plugins.
        (
            "import os, pathlib, tempfile\n"
            "home = pathlib.Path(tempfile.mkdtemp())\n"
            "(home / '.tilde').mkdir()\n"
            "(home / '.tilde' / 'config.yaml').write_text('endpoint_url: http://127.0.0.1:1\\n')\n"
            "os.environ['HOME'] = str(home)\n"
            "import tilde.data\n"
            "tilde.data.Client(api_key='tuk-x').close()",
            {"yaml", "importlib.metadata", "tilde.data.batch_uploads", "tilde.data._capabilities"},
        ),
        (
            "import tilde.data\n"
            "with tilde.data.Client(api_key='tuk-x', endpoint_url='http://127.0.0.1:1') as client:\n"
            "    tilde.data.ObjectReader(client, '/object', {'path': 'a'}).close()",
            {"tilde.data._reader_window"},
        ),
    ],
)
def test_deferred_modules_still_load_when_used(code: str, needed: set[str]) -> None:
    assert needed <= _loaded_after(code)
