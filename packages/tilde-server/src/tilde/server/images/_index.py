"""The store's index file and its locks: one JSON document, replaced atomically under an exclusive flock.

Readers never lock (the file is always whole). Pins are shared flocks on one small file per layer, so a pin
held by a server is seen by an eviction run from the ``tilde-server image`` command too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Index", "LayerLock"]


class Index:
    """``index.json`` under the store's root: ``{"images": {...}, "layers": {...}}``."""

    def __init__(self, root: Path) -> None:
        self.path = root / "index.json"
        self.lock_path = root / "index.lock"

    def read(self) -> dict[str, Any]:
        """Return the current document (empty when the store is new)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        data.setdefault("images", {})
        data.setdefault("layers", {})
        return data  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Lock, read, let the caller change the document, then write it back (not on an exception)."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = self.read()
            yield data
            tmp = self.path.with_name(f"index.json.{os.getpid()}.tmp")
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(out, "w", encoding="utf-8") as stream:
                stream.write(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)
        finally:
            os.close(fd)


class LayerLock:
    """The lock file of one layer: shared while pinned, exclusive while being deleted."""

    def __init__(self, locks_dir: Path, layer_id: str) -> None:
        self.path = locks_dir / layer_id.replace(":", "-")
        self.fd: int | None = None

    def share(self) -> None:
        """Take the shared (pin) lock, waiting for a deletion in progress to end."""
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_SH)

    def try_exclusive(self) -> bool:
        """Take the exclusive lock if nobody pins the layer; return whether it was taken."""
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            return False
        return True

    def release(self) -> None:
        """Drop whichever lock is held."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
