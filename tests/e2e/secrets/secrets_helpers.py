"""Helpers for the secrets end-to-end tests (a module of its own: ``conftest`` names clash)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

#: The inline policy of test agents: everything (their creator, an owner, caps them anyway).
ALLOW_ALL = "*()"


def secrets_url(repo_path: str) -> str:
    org, repo = repo_path.split("/")
    return f"/organizations/{org}/repositories/{repo}/secrets"


def agent_secrets_url(org_name: str, agent: str) -> str:
    return f"/organizations/{org_name}/agents/{agent}/secrets"


def make_agent(api: httpx.Client, org_name: str, name: str) -> dict[str, Any]:
    """Create an agent allowed everything its creator may do, with one API key (``token``)."""
    created = api.post(f"/organizations/{org_name}/agents", json={"name": name, "description": ""})
    assert created.status_code == 201, created.text
    updated = api.put(f"/organizations/{org_name}/agents/{name}", json={"inline_policy": ALLOW_ALL})
    assert updated.status_code == 200, updated.text
    key = api.post(f"/organizations/{org_name}/agents/{name}/auth/keys", json={"name": "k"})
    assert key.status_code == 201, key.text
    return {**created.json(), "token": key.json()["token"]}


def files_containing(root: Path, needles: dict[str, str]) -> dict[str, list[str]]:
    """Map each needle's label to the files under ``root`` whose bytes contain it (WAL files included)."""
    found: dict[str, list[str]] = {}
    # os.walk, not rglob: sandboxes of other tests create and remove directories while this scans (rglob
    # raises when a directory vanishes under it; os.walk skips it).
    paths = [Path(top, name) for top, _dirs, names in os.walk(root) for name in names]
    for path in sorted(paths):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:  # a socket or a file removed while scanning
            continue
        for label, needle in needles.items():
            if needle.encode() in data:
                found.setdefault(label, []).append(str(path.relative_to(root)))
    return found
