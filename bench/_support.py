"""Helpers shared by the benchmarks: a tilde-server in its own process, free ports, JSON output."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until ``url`` answers (any status), or fail when the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


@contextmanager
def serving(command: list[str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process (its output, the access log, discarded) until the block ends."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(ready_url, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def tilde_server(data_dir: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    """``tilde-server serve`` in its own process, as deployed: yields ``(endpoint, admin key, process)``."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "tilde.server",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    with serving(command, endpoint + "/healthz") as process:
        yield endpoint, (data_dir / "admin_key").read_text().strip(), process


def write_json(path: Path | None, result: Any) -> None:
    """Write a benchmark's figures as JSON when ``--json`` asked for it."""
    if path is not None:
        path.write_text(json.dumps(result, indent=2) + "\n")
