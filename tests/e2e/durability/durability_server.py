"""A tilde-server in its own process that a test can ``kill -9`` and start again on the same data directory.

Also the checks every restart runs: SQLite's ``integrity_check`` on each database, and which temporary files
the blob store holds (the killed process's leftovers, which the next start must sweep, and the files of
multipart uploads that can still be completed, which it must keep).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

_LISTENING = re.compile(r"tilde-server \S+ on (http://127\.0\.0\.1:\d+) ")
_SWEPT = re.compile(r"swept (\d+) orphaned temporary files")
#: Longest wait for a start (import, opening the stores, sweeping) before the test fails.
START_TIMEOUT = 60.0


class KillableServer:
    """``python -m tilde.server serve`` on a free loopback port; restartable on the same data directory.

    Args:
        data_dir: The server's data directory (kept across restarts).
        log_path: Where the output of every run is appended.

    """

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.kills = 0
        self.starts = 0

    @property
    def api_key(self) -> str:
        """The admin key the first start generated (stored in the data directory)."""
        return (self.data_dir / "admin_key").read_text(encoding="utf-8").strip()

    @property
    def api(self) -> str:
        """The ``/api/v1`` base URL of the running server."""
        return self.base_url + "/api/v1"

    def start(self) -> None:
        """Start the server and wait until it answers ``/healthz``."""
        assert self.process is None
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tilde.server",
                    "serve",
                    "--port",
                    "0",
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"tilde-server exited at start:\n{self.output(offset)}")
            found = _LISTENING.search(self.output(offset))
            if found:
                self.base_url = found.group(1)
                try:
                    if httpx.get(self.base_url + "/healthz", timeout=5).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"tilde-server did not start:\n{self.output(offset)}")

    def kill(self) -> None:
        """``kill -9`` the server and reap it."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        assert self.process.returncode == -signal.SIGKILL
        self.process = None
        self.kills += 1

    def stop(self) -> None:
        """Stop the server if it runs (SIGTERM, then SIGKILL)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def output(self, offset: int = 0) -> str:
        """The log from ``offset`` on."""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    def swept_counts(self) -> list[int]:
        """How many orphaned temporary files each start reported sweeping (silent when it swept none)."""
        return [int(n) for n in _SWEPT.findall(self.output())]

    def client(self, **options: Any) -> httpx.Client:
        """An HTTP client for the running server (absolute URLs; pass ``headers=self.auth`` to API calls)."""
        return httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), **options)

    @property
    def auth(self) -> dict[str, str]:
        """The admin's Authorization header."""
        return {"Authorization": f"Bearer {self.api_key}"}

    # -- the checks run while the server is down --------------------------------------------------------

    def integrity_problems(self) -> dict[str, list[str]]:
        """Run ``PRAGMA integrity_check`` on every SQLite database of the data directory; return failures."""
        problems: dict[str, list[str]] = {}
        databases = sorted(self.data_dir.glob("*.sqlite3"))
        assert databases, "no database in the data directory"
        for database in databases:
            with sqlite3.connect(database) as db:
                rows = [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
            db.close()
            if rows != ["ok"]:
                problems[database.name] = rows
        return problems

    def temporary_files(self) -> list[str]:
        """Names of the files in the blob store's temporary directory."""
        tmp = self.data_dir / "blobs" / "tmp"
        return sorted(entry.name for entry in tmp.iterdir()) if tmp.is_dir() else []

    def live_upload_files(self) -> set[str]:
        """The temporary-file names of in-place multipart uploads the metadata store still knows."""
        with sqlite3.connect(self.data_dir / "meta.sqlite3") as db:
            ids = [str(row[0]) for row in db.execute("SELECT id FROM uploads WHERE part_size IS NOT NULL")]
        db.close()
        return {f"u-{upload_id}.tmp" for upload_id in ids}
