"""``tilde-server rotate-master-key``: every stored secret re-sealed under the new key, none lost."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tilde.server import LocalServer
from tilde.server.crypto import MASTER_KEY_ENV, MASTER_KEY_FILE

OLD = base64.urlsafe_b64encode(b"o" * 32).decode()
NEW = base64.urlsafe_b64encode(b"n" * 32).decode()


def _cli(data_dir: Path, master_keys: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != MASTER_KEY_ENV}
    if master_keys is not None:
        env[MASTER_KEY_ENV] = master_keys
    return subprocess.run(
        [sys.executable, "-m", "tilde.server", "rotate-master-key", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def _with_server(data_dir: Path, monkeypatch: pytest.MonkeyPatch, keys: str | None) -> LocalServer:
    if keys is None:
        monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(MASTER_KEY_ENV, keys)
    return LocalServer(data_dir=data_dir, admin_key="tuk-rotation-test-admin-key")


def _admin(server: LocalServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {server.api_key}"}
    )


def _seed(data_dir: Path, monkeypatch: pytest.MonkeyPatch, keys: str | None) -> None:
    with _with_server(data_dir, monkeypatch, keys) as server, _admin(server) as api:
        assert api.post("/organizations", json={"name": "rot"}).status_code == 201
        assert api.post("/organizations/rot/repositories", json={"name": "data"}).status_code == 201
        assert (
            api.post("/organizations/rot/agents", json={"name": "bot", "description": ""}).status_code == 201
        )
        for url in ("/organizations/rot/repositories/data/secrets", "/organizations/rot/agents/bot/secrets"):
            assert api.put(f"{url}/TOKEN", json={"value": f"value of {url}"}).status_code == 200


def _values(server: LocalServer) -> list[int | str]:
    with _admin(server) as api:
        out: list[int | str] = []
        for url in ("/organizations/rot/repositories/data/secrets", "/organizations/rot/agents/bot/secrets"):
            got = api.get(f"{url}/TOKEN")
            out.append(got.json()["value"] if got.status_code == 200 else got.status_code)
        return out


EXPECTED = [
    "value of /organizations/rot/repositories/data/secrets",
    "value of /organizations/rot/agents/bot/secrets",
]


def test_rotation_from_an_old_configured_key_to_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(tmp_path, monkeypatch, OLD)
    with _with_server(tmp_path, monkeypatch, NEW) as server:
        assert _values(server) == [500, 500]  # the new key alone cannot open them yet
    rotated = _cli(tmp_path, f"{NEW},{OLD}")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("re-sealed 2 values (2 secrets")
    assert _cli(tmp_path, f"{NEW},{OLD}").stdout.startswith("re-sealed 0 values")  # idempotent
    with _with_server(tmp_path, monkeypatch, NEW) as server:
        assert _values(server) == EXPECTED
    with _with_server(tmp_path, monkeypatch, OLD) as server:
        assert _values(server) == [500, 500]  # the old key is no longer needed, nor enough


def test_rotation_from_the_generated_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path, monkeypatch, None)
    assert (tmp_path / MASTER_KEY_FILE).exists()
    rotated = _cli(tmp_path, NEW)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith("re-sealed 2 values")
    (tmp_path / MASTER_KEY_FILE).unlink()
    with _with_server(tmp_path, monkeypatch, NEW) as server:
        assert _values(server) == EXPECTED


def test_rotation_needs_the_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(tmp_path, monkeypatch, OLD)
    missing = _cli(tmp_path, None)
    assert missing.returncode == 1
    assert MASTER_KEY_ENV in missing.stderr
    unknown = _cli(tmp_path, NEW)  # the old key is not given: nothing can be re-sealed
    assert unknown.returncode == 1
    assert "cannot be decrypted" in unknown.stderr
    malformed = _cli(tmp_path, "not-a-key")
    assert malformed.returncode == 1
    with _with_server(tmp_path, monkeypatch, OLD) as server:
        assert _values(server) == EXPECTED  # nothing changed
