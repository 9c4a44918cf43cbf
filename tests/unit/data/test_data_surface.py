"""tilde.data's public surface, and that it stands alone in a slim install (core + data only)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import tilde.data

EXPECTED = [
    "Client",
    "Commit",
    "CommitResult",
    "Commits",
    "CopyObjectResult",
    "Entry",
    "EntryRecord",
    "FolderTransferResult",
    "ListingEntry",
    "MultipartUpload",
    "ObjectMetadata",
    "ObjectReader",
    "PutObjectResult",
    "ReadOnlyObjects",
    "Repositories",
    "Repository",
    "Session",
    "SessionObjects",
    "SourceMetadata",
    "TransferProgress",
    "UploadRequest",
    "UploadSettings",
    "UploadStrategy",
    "__version__",
]


def test_all_is_exactly_the_public_surface() -> None:
    # EXPECTED is the intended surface written down on its own: changing it takes an edit here too.
    assert tilde.data.__all__ == EXPECTED
    for name in EXPECTED:
        assert hasattr(tilde.data, name)
    # Nothing public is importable from tilde.data without being listed (submodules aside).
    public = {
        name
        for name in dir(tilde.data)
        if not name.startswith("_") and not isinstance(getattr(tilde.data, name), types.ModuleType)
    }
    assert public | {"__version__"} == set(EXPECTED)


def test_data_layer_imports_nothing_beyond_core() -> None:
    # A fresh interpreter: which modules does using the data layer pull in? (click is left out: httpx itself
    # imports its optional command line when click happens to be installed.)
    script = (
        "import sys\n"
        "import tilde.data\n"
        "client = tilde.data.Client(endpoint_url='http://127.0.0.1:9', api_key='k')\n"
        "client._upload_strategies()\n"
        "repo = client.repository('acme/data')\n"
        "repo.attach('5e551011-0000-4000-8000-000000000001').objects.get('p')\n"
        "client.close()\n"
        "bad = ('websockets', 'tilde.server', 'tilde.compute', 'tilde.admin', 'tilde.cli',\n"
        "       'starlette', 'uvicorn')\n"
        "print(sorted(m for m in sys.modules if m.startswith(bad)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"TILDE_PLUGINS": ""},
    )
    assert done.stdout.strip() == "[]"


def test_repository_class_is_a_class_attribute() -> None:
    assert tilde.data.Client.repository_class is tilde.data.Repository


def test_read_only_objects_have_no_writers_for_the_type_checker(tmp_path: Path) -> None:
    from mypy import api

    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "from tilde.data import Client, ReadOnlyObjects\n"
        "objects: ReadOnlyObjects = Client().repository('a/b').commits.get('c').objects\n"
        "objects.put('x', b'y')\n"
        "objects.copy('x', 'z')\n"
        "objects.delete('x')\n"
        "objects.delete_many(['x'])\n"
        "objects.list()\n"
        "objects.get('x').read()\n"
    )
    stdout, _, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(snippet)]
    )
    assert status == 1
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == 4, stdout
    assert all('"ReadOnlyObjects" has no attribute' in line for line in errors)
