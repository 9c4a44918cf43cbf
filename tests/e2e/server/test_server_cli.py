"""``tilde-server serve`` / ``python -m tilde.server serve`` as a real process."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serve_helpers import free_port, wait_until_up


def serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tilde.server", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out


def test_generated_admin_key_is_stored_privately_and_printed_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    process = serve(["--port", str(port), "--data-dir", str(data_dir)])
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process)
        key_file = data_dir / "admin_key"
        key = key_file.read_text().strip()
        assert key.startswith("tuk-")
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/organizations", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200
    finally:
        first_output = stop(process)
    assert key in first_output
    port = free_port()
    process = serve(["--port", str(port)], env={"TILDE_SERVER_DATA_DIR": str(data_dir)})
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process)
    finally:
        second_output = stop(process)
    assert key not in second_output


@pytest.mark.parametrize("via_env", [False, True])
def test_explicit_admin_key(tmp_path: Path, via_env: bool) -> None:
    port = free_port()
    key = "tuk-explicit-test-key"
    args = ["--port", str(port), "--data-dir", str(tmp_path)]
    env = {"TILDE_SERVER_ADMIN_KEY": key} if via_env else None
    process = serve(args if via_env else [*args, "--admin-key", key], env=env)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process)
        ok = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/organizations", headers={"Authorization": f"Bearer {key}"}
        )
        assert ok.status_code == 200
    finally:
        output = stop(process)
    assert not (tmp_path / "admin_key").exists()
    assert key not in output
