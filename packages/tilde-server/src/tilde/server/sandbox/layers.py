"""The sandbox's filesystem layers: the lower tree of hard links, and the changes found in the upper layer.

The lower layer is the session's view materialised as hard links to the blob store's immutable files, so
starting a sandbox copies no contents. The overlay's upper layer then holds exactly what the sandbox wrote:
new or copied-up files, whiteouts (character devices 0/0) for deletions, and opaque directories (a directory
that was deleted and re-created hides everything below it in the lower layer).
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Changes", "LowerFile", "LowerIndex", "build_delta", "build_lower", "collect_changes"]

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
_HASH_CHUNK = 1024 * 1024
_LINK_BATCH = 256


@dataclass(frozen=True)
class LowerFile:
    """One object as it appears in the lower layer.

    Attributes:
        size: Size in bytes.
        sha256: Hex digest of the contents.
        content_type: The object's MIME type (kept when the sandbox modifies the file).

    """

    size: int
    sha256: str
    content_type: str


@dataclass
class LowerIndex:
    """What the lower layer holds, keyed by path relative to the mountpoint.

    Attributes:
        files: Relative path -> `LowerFile`.
        skipped: Objects that could not be shown (e.g. ``a`` and ``a/b`` both exist: a file cannot be a
            directory); they are never reported as deleted.

    """

    files: dict[str, LowerFile] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    _sorted: list[str] | None = None

    def under(self, directory: str) -> list[str]:
        """Every lower file strictly below ``directory`` (a relative path without trailing slash)."""
        if self._sorted is None:
            self._sorted = sorted(self.files)
        prefix = directory + "/"
        start = bisect.bisect_left(self._sorted, prefix)
        found = []
        for path in self._sorted[start:]:
            if not path.startswith(prefix):
                break
            found.append(path)
        return found


@dataclass
class Changes:
    """The sandbox's effect on the repository, relative to the mountpoint.

    Attributes:
        writes: ``(relative path, host file in the upper layer)`` for added or modified files.
        deletes: Relative paths of lower files that were removed.
        ignored: Upper-layer entries that cannot be stored as objects (symlinks, sockets, devices...).

    """

    writes: list[tuple[str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.writes or self.deletes)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError as error:
        # Another filesystem, or an inode at its hard-link limit: fall back to a private copy.
        if error.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM):
            raise
        shutil.copyfile(source, target)
        os.chmod(target, 0o644)


def _link_all(pairs: list[tuple[str, str]]) -> None:
    for source, target in pairs:
        _link_or_copy(source, target)


def build_lower(entries: Iterable[Any], prefix: str, lower_dir: str, *, workers: int = 2) -> LowerIndex:
    """Materialise a session view under ``lower_dir`` as hard links to blob files.

    Reading the view and linking overlap: batches of links run in ``workers`` threads (``link`` releases the
    GIL) while the view is still being read; directories are created before any batch that needs them.

    Args:
        entries: The engine's ``ViewEntry`` items (path order), all starting with ``prefix``.
        prefix: The repository prefix mounted at the mountpoint (``""`` or ending with ``/``).
        lower_dir: An empty directory.
        workers: Threads creating links.

    Returns:
        The index of what was materialised.

    """
    index = LowerIndex()
    files = index.files
    made_dirs: set[str] = {""}
    cut = len(prefix)
    base = lower_dir.rstrip("/") + "/"
    batch: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tilde-sandbox-link") as pool:
        futures = []
        for entry in entries:
            rel = entry.path[cut:]
            if not rel:
                continue
            parent, _, name = rel.rpartition("/")
            if len(name.encode("utf-8", "surrogateescape")) > 255:
                index.skipped.append(entry.path)
                continue
            if parent not in made_dirs:
                # A directory cannot have the name of a file shown earlier (``a`` before ``a/b``): the file
                # wins.
                parts = parent.split("/")
                ancestors = ["/".join(parts[: i + 1]) for i in range(len(parts))]
                if any(path in files for path in ancestors):
                    index.skipped.append(entry.path)
                    continue
                os.makedirs(base + parent, exist_ok=True)
                made_dirs.update(ancestors)
            if rel in made_dirs:
                index.skipped.append(entry.path)
                continue
            batch.append((str(entry.blob_path), base + rel))
            if len(batch) >= _LINK_BATCH:
                futures.append(pool.submit(_link_all, batch))
                batch = []
            files[rel] = LowerFile(entry.size, entry.etag.strip('"'), entry.content_type)
        if batch:
            futures.append(pool.submit(_link_all, batch))
        for future in futures:
            future.result()
    return index


def build_delta(
    items: Iterable[Any], prefix: str, directory: str, parent: LowerIndex, blob_path: Callable[[Any], Any]
) -> LowerIndex:
    """Materialise one commit's changes as a layer over its parent's tree: links, and whiteouts for removals.

    Needs the right to create whiteouts (character devices 0/0): root, or any user on Linux 5.8 and later.

    Args:
        items: The engine's diff items (parent → commit) under ``prefix``: ``path``, ``status``, ``version``.
        prefix: The repository prefix mounted at the mountpoint (``""`` or ending with ``/``).
        directory: An empty directory (the new top layer).
        parent: The parent tree's index.
        blob_path: Maps a ``BlobRef`` to its file.

    Returns:
        The index of the stacked tree (the parent's, updated).

    Raises:
        DeltaUnsupported: When a change turns a file into a directory or back, or the parent skipped objects.

    """
    from tilde.server.sandbox.lower_cache import DeltaUnsupported

    if parent.skipped:
        raise DeltaUnsupported("the parent tree could not show every object")
    files = dict(parent.files)
    base = directory.rstrip("/") + "/"
    made_dirs: set[str] = {""}
    cut = len(prefix)

    def ensure_dir(rel_dir: str) -> None:
        if rel_dir not in made_dirs:
            os.makedirs(base + rel_dir, exist_ok=True)
            made_dirs.add(rel_dir)

    for item in items:
        rel = item.path[cut:]
        if not rel:
            continue
        rel_dir = rel.rpartition("/")[0]
        if item.status == "removed":
            if rel in files:
                ensure_dir(rel_dir)
                os.mknod(base + rel, stat.S_IFCHR, os.makedev(0, 0))
                del files[rel]
            continue
        parts = rel.split("/")
        if any("/".join(parts[:i]) in files for i in range(1, len(parts))) or parent.under(rel):
            raise DeltaUnsupported(f"{rel} changes between a file and a directory")
        ensure_dir(rel_dir)
        version = item.version
        _link_or_copy(str(blob_path(version.blob)), base + rel)
        files[rel] = LowerFile(version.size, version.blob.sha256, version.content_type)
    return LowerIndex(files=files)


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        buffer = bytearray(_HASH_CHUNK)
        view = memoryview(buffer)
        while True:
            count = handle.readinto(view)
            if not count:
                break
            digest.update(view[:count])
    return digest.hexdigest()


def _is_opaque(path: str) -> bool:
    for name in _OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def collect_changes(upper_dir: str, lower: LowerIndex) -> Changes:
    """Compare the upper layer with the lower index.

    A file that was merely opened for writing (copied up) but whose bytes did not change is not a
    modification.

    Args:
        upper_dir: The overlay's upper directory (after every sandbox process has exited).
        lower: What the lower layer held.

    Returns:
        The added/modified files and the deleted paths.

    """
    changes = Changes()
    deleted: set[str] = set()
    present: set[str] = set()  # regular files in the upper layer, changed or not

    def hide_lower(rel: str) -> None:
        if rel in lower.files:
            deleted.add(rel)
        deleted.update(lower.under(rel))

    def walk(directory: str, base: str) -> None:
        with os.scandir(directory) as scan:
            entries = list(scan)
        for entry in entries:
            rel = base + entry.name
            info = entry.stat(follow_symlinks=False)
            mode = info.st_mode
            if stat.S_ISCHR(mode) and info.st_rdev == 0:
                hide_lower(rel)
            elif stat.S_ISDIR(mode):
                if rel in lower.files:
                    deleted.add(rel)  # a file replaced by a directory
                if _is_opaque(entry.path):
                    deleted.update(lower.under(rel))
                walk(entry.path, rel + "/")
            elif stat.S_ISREG(mode):
                deleted.update(lower.under(rel))  # a directory replaced by a file
                present.add(rel)
                known = lower.files.get(rel)
                if (
                    known is not None
                    and known.size == info.st_size
                    and known.sha256 == _sha256_of(entry.path)
                ):
                    continue  # copied up without a change
                changes.writes.append((rel, entry.path))
            else:
                changes.ignored.append(rel)

    walk(upper_dir, "")
    changes.deletes = sorted(deleted - present)
    changes.writes.sort()
    return changes
