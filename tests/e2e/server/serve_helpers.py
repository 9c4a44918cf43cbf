"""Helpers of the tests that run ``tilde-server serve`` as a process of its own."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(
    url: str, process: subprocess.Popen[Any], *, log: Path | None = None, deadline: float = 60.0
) -> None:
    """Wait until ``url`` answers ``/healthz``; fail with the server's output if it exits first."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            output = log.read_text(errors="replace") if log is not None else process.communicate()
            raise AssertionError(f"server exited early: {output}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("server did not come up")
