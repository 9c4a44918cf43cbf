"""The README's first command, ``hatch run demo``, run the way a newcomer runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.sandbox
def test_demo_tour_runs_and_tells_the_story() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILDE_")}
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(ROOT / "demo" / "tour.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # The transform ran in a sandbox and its changes were committed.
    assert "wrote 56 rows to summary/daily_means.csv" in out
    assert "added     summary/daily_means.csv" in out
    assert "removed   raw/upload.tmp" in out
    # The failing sandbox changed nothing.
    assert "exit code 1" in out
    assert "every object unchanged: True" in out
    # The result reads back from the commit, including a byte range.
    assert "warmest: Valley on 2026-11-06" in out
    assert "(bytes 0-120/1527)" in out
    # The shell's commands ran in one sandbox and its change was committed on leaving the block.
    assert "daily_means.csv has 57 lines" in out
    assert "added     notes/README" in out
    assert "Done: the server stopped" in out
    assert "ResourceWarning" not in done.stderr
