"""Scanning a live server's data directory for bytes that must not be there (secrets in clear)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

__all__ = ["files_containing"]

_SCAN = """
import json, os, sys
root, needles = sys.argv[1], json.loads(sys.argv[2])
found = {}
for top, _dirs, names in os.walk(root):  # skips directories that vanish mid-scan (other tests' sandboxes)
    for name in sorted(names):
        path = os.path.join(top, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:  # a socket or a file removed while scanning
            continue
        for label, needle in needles.items():
            if needle.encode() in data:
                found.setdefault(label, []).append(os.path.relpath(path, root))
print(json.dumps(found))
"""


def files_containing(root: Path, needles: dict[str, str]) -> dict[str, list[str]]:
    """Map each needle's label to the files under ``root`` whose bytes contain it (WAL files included).

    The scan runs in a child process. Test servers run inside the test process, and closing a descriptor of
    a SQLite file there would drop the server's own POSIX locks on it (they belong to the process), after
    which another process (``tilde-server user create``) could reset the WAL under the server.
    """
    result = subprocess.run(
        [sys.executable, "-c", _SCAN, str(root), json.dumps(needles)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found: dict[str, list[str]] = json.loads(result.stdout)
    return {label: sorted(paths) for label, paths in found.items()}
