"""The data directory is private to the server's user: files 0600, directories 0700.

Blobs, databases and secrets are created that way; a directory or database from an older server is tightened
when it is opened (only when this process owns it).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def _tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(OSError):
        info = path.stat()
        if info.st_uid == os.geteuid() and info.st_mode & 0o777 != mode:
            os.chmod(path, mode)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, tightening it if it exists; return it."""
    missing = [parent for parent in [path, *path.parents] if not parent.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
    _tighten(path, DIR_MODE)
    return path


def private_database(path: Path) -> Path:
    """Create the SQLite file ``path`` empty with mode 0600 when missing, else tighten it; return it.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode; existing ones are tightened too.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        for name in (path.name, path.name + "-wal", path.name + "-shm"):
            _tighten(path.with_name(name), FILE_MODE)
    return path
