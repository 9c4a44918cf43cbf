"""Pre-flight: can sandboxes run here? The demo asks before uploading anything and says why not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tilde.server.sandbox.bwrap import BWRAP_ENV
from tilde.server.sandbox.preflight import sandbox_preflight
from tilde.server.sandbox.settings import SandboxSettings

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[3]


def test_sandboxes_can_run_here() -> None:
    assert sandbox_preflight() is None


def test_a_missing_bwrap_is_named(tmp_path: Path) -> None:
    problem = sandbox_preflight(SandboxSettings(bwrap=str(tmp_path / "bwrap")))
    assert problem is not None
    assert problem.startswith("bubblewrap not found:")
    assert "\n" not in problem


def test_a_bwrap_that_cannot_make_namespaces_is_reported_with_its_reason(tmp_path: Path) -> None:
    # What bubblewrap prints where unprivileged user namespaces are disabled.
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    problem = sandbox_preflight(SandboxSettings(bwrap=str(fake)))
    assert problem == "a test sandbox failed: bwrap: No permissions to create a new namespace"


def test_a_disabled_runtime_is_reported() -> None:
    assert sandbox_preflight(SandboxSettings(enabled=False)) is not None


def test_the_demo_stops_before_uploading_when_sandboxes_cannot_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILDE_")}
    env[BWRAP_ENV] = str(tmp_path / "missing" / "bwrap")
    done = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "tour.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # no server started, nothing uploaded
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: sandboxes cannot run on this machine: bubblewrap not found:")
