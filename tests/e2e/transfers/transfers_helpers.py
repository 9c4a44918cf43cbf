"""Helpers of the folder-transfer tests: trees to upload and their comparison (kept out of conftest.py)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

#: A tree with nested folders, empty files and names outside ASCII.
TREE: dict[str, bytes] = {
    "top.txt": b"top level\n",
    "empty.bin": b"",
    "a/b/c/deep.txt": b"deep " * 100,
    "a/b/empty": b"",
    "a/sibling.csv": b"x,y\n1,2\n",
    "données/été.txt": "café ☕".encode(),
    "日本/ファイル.txt": "こんにちは".encode(),
    "with space/and 'quotes'.txt": b"q",
    "many/" + "n" * 120 + ".txt": b"a long name",
}


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative POSIX path -> bytes) under ``root``."""
    for relative, data in files.items():
        path = root.joinpath(*relative.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative POSIX path -> bytes); temporary leftovers included."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def digest_tree(root: Path) -> dict[str, str]:
    """Like `read_tree`, but SHA-256 digests (for trees holding large files)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            out[path.relative_to(root).as_posix()] = digest.hexdigest()
    return out


def tar_of(members: list[tuple[str, bytes]], *, link: str | None = None) -> bytes:
    """A tar stream of regular files (and, with ``link``, one symbolic link member of that name)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
    return buffer.getvalue()


def tar_header_only(name: str, size: int) -> bytes:
    """A tar stream whose single member claims ``size`` bytes but carries none (limits are header checks)."""
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.PAX_FORMAT) + b"\0" * (2 * tarfile.BLOCKSIZE)


@dataclass
class RecordingProgress:
    """A `TransferProgress` that records every call and fails if two ``advance`` calls overlap."""

    starts: list[tuple[int | None, int | None]] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    finishes: int = 0
    threads: set[str] = field(default_factory=set)
    overlapped: bool = False
    _busy: threading.Lock = field(default_factory=threading.Lock)

    def start(self, *, total_files: int | None, total_bytes: int | None) -> None:
        self.starts.append((total_files, total_bytes))

    def advance(self, *, files: int = 0, bytes: int = 0) -> None:
        if not self._busy.acquire(blocking=False):
            self.overlapped = True
            return
        try:
            self.threads.add(threading.current_thread().name)
            self.files += files
            self.bytes += bytes
        finally:
            self._busy.release()

    def finish(self) -> None:
        self.finishes += 1
