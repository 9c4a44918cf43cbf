"""Compare the server's own OpenAPI document with another one (the upstream specification) and print the gaps.

Usage: ``hatch run python scripts/compare_openapi.py UPSTREAM.yaml [--strict]``

For every operation both documents have (paths compared with their parameters renamed away), prints the
statuses one documents and the other does not; then the operations only one of them has. ``--strict`` exits
non-zero when a shared operation's success statuses differ. Nothing of the other document is copied: it is
read at run time only.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tilde.server.openapi import server_document

_METHODS = {"get", "put", "post", "delete", "patch", "head"}


def _shape(path: str) -> str:
    return re.sub(r"{[^}]+}", "{}", path)


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS:
                found[(method.upper(), _shape(path))] = {str(s) for s in operation.get("responses", {})}
    return found


def main(argv: list[str] | None = None) -> int:
    """Print the differences; return 1 under ``--strict`` when success statuses disagree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", type=Path)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    ours = _operations(server_document())
    theirs = _operations(yaml.safe_load(args.upstream.read_text(encoding="utf-8")))
    disagreements = 0
    for key in sorted(ours.keys() & theirs.keys()):
        our_ok = {s for s in ours[key] if s.startswith("2")}
        their_ok = {s for s in theirs[key] if s.startswith("2")}
        if our_ok != their_ok:
            disagreements += 1
            print(f"success   {key[0]:6} {key[1]}: ours {sorted(our_ok)}, upstream {sorted(their_ok)}")
        missing = sorted(s for s in theirs[key] - ours[key] if not s.startswith("2"))
        if missing:
            print(f"errors    {key[0]:6} {key[1]}: upstream also documents {missing}")
    for key in sorted(ours.keys() - theirs.keys()):
        print(f"ours only {key[0]:6} {key[1]}")
    for key in sorted(theirs.keys() - ours.keys()):
        print(f"upstream  {key[0]:6} {key[1]}")
    shared = len(ours.keys() & theirs.keys())
    print(f"{shared} shared operations, {disagreements} with different success statuses", file=sys.stderr)
    return 1 if args.strict and disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
