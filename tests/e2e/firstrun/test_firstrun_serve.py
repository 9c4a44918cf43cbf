"""``tilde-server serve``: bad options and a busy port are one line before any banner; no secrets logged."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from tilde.server.access_log import REDACTED, redact_target
from tilde.server.cli import main


def _serve(args: list[str], tmp_path: Path) -> tuple[int, list[str]]:
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(data_dir), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert not data_dir.exists(), "the data directory was created before the options were checked"
    return result.exit_code, result.output.splitlines()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "99999"], "error: Invalid value for '--port': 99999 is not in the range 0<=x<=65535."),
        (["--port", "-1"], "error: Invalid value for '--port': -1 is not in the range 0<=x<=65535."),
        (["--host", "no-such-host.invalid"], "error: cannot listen on host 'no-such-host.invalid': "),
        (["--host", "256.1.1.1"], "error: cannot listen on host '256.1.1.1': "),
    ],
)
def test_invalid_options_are_one_line_before_any_banner(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    code, lines = _serve(args, tmp_path)
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines
    assert "Traceback" not in lines[0]


def test_a_port_in_use_is_one_line_before_any_banner(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, lines = _serve(["--port", str(port)], tmp_path)
    assert code == 1
    assert lines == [
        f"error: 127.0.0.1:{port} is already in use (another server?); choose another port with --port"
    ]


def test_redact_target_hides_secret_query_values_only() -> None:
    assert (
        redact_target("/uploads/u1?expires=17&signature=abc")
        == f"/uploads/u1?expires=17&signature={REDACTED}"
    )
    s3 = redact_target("/x?X-Amz-Signature=s&X-Amz-Credential=c&X-Amz-Security-Token=t&prefix=a/b")
    r = REDACTED
    assert s3 == f"/x?X-Amz-Signature={r}&X-Amz-Credential={r}&X-Amz-Security-Token={r}&prefix=a/b"
    assert redact_target("/api/v1/organizations?after=x&amount=5") == "/api/v1/organizations?after=x&amount=5"
    assert redact_target("/healthz") == "/healthz"
    assert redact_target("/odd?opaque-blob") == "/odd?opaque-blob="


def _wait_for_banner(process: subprocess.Popen[str]) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        found = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
        if found:
            return int(found.group(1))
        if not line and process.poll() is not None:
            break
    raise AssertionError("no banner")


def test_the_access_log_never_shows_presigned_signatures(tmp_path: Path) -> None:
    key = "tuk-access-log-test-key"
    env = {**os.environ, "TILDE_SERVER_ADMIN_KEY": key}
    process = subprocess.Popen(
        [sys.executable, "-m", "tilde.server", "serve", "--port", "0", "--data-dir", str(tmp_path / "d")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        port = _wait_for_banner(process)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base + "/api/v1", headers={"Authorization": f"Bearer {key}"}) as api:
            assert api.post("/organizations", json={"name": "acme"}).status_code == 201
            assert api.post("/organizations/acme/repositories", json={"name": "data"}).status_code == 201
            repo = "/organizations/acme/repositories/data"
            session_id = api.post(f"{repo}/sessions").json()["session_id"]
            staged = api.put(f"{repo}/object", params={"session_id": session_id, "path": "a.txt"}).json()
            upload_url = staged["upload_url"]
            assert httpx.put(upload_url, content=b"hello").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
    log = out + err
    assert process.returncode == 0, log
    assert "Aborted" not in log
    signature = parse_qs(urlsplit(upload_url).query)["signature"][0]
    assert "PUT /uploads/" in log  # the request is logged ...
    assert f"signature={REDACTED}" in log
    assert signature not in log  # ... without its signature
    assert key not in log
