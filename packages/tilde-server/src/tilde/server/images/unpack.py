"""Unpack one layer archive into a directory of its own, refusing anything that would escape it.

Layers stay separate (the store shares them between images), so OCI whiteouts cannot be applied: they are
converted to the form overlayfs reads in a lower directory.

- ``.wh.NAME`` → a character device 0/0 named NAME when running as root; otherwise an empty file NAME with
  the ``user.overlay.whiteout`` xattr, its directory marked ``user.overlay.opaque=x`` (mount with
  ``userxattr``).
- ``.wh..wh..opq`` → the directory gets ``user.overlay.opaque=y`` (and ``trusted.overlay.opaque=y`` as root).

Refused with `ImageRefused`: absolute names, ``..`` components, entries reached through a symbolic link of the
layer (extraction never follows a link), hard links to anything outside the layer or to a directory, device
nodes, and (with ``setuid="refuse"``) setuid/setgid files. ``setuid="strip"`` (the default) clears those
bits instead: real distribution images carry setuid ``su``/``mount``, which are inert in a sandbox (no new
privileges) but should not sit on the host with their bits set. Ownership is not restored: every file
belongs to the store's user, which the sandbox maps to its own user; modes and times are kept.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import shutil
import stat
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

from tilde.server.images.errors import ImagePullError, ImageRefused

__all__ = ["SetuidPolicy", "UnpackResult", "remove_tree", "unpack_layer"]

SetuidPolicy = Literal["refuse", "strip", "keep"]

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_CHUNK = 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class UnpackResult:
    """What unpacking a layer found.

    Attributes:
        diff_id: ``sha256:`` digest of the uncompressed archive (the image config's ``rootfs.diff_ids``).
        size: Bytes of the regular files written.

    """

    __slots__ = ("diff_id", "size")

    def __init__(self, diff_id: str, size: int) -> None:
        self.diff_id = diff_id
        self.size = size


class _HashingReader(io.RawIOBase):
    """A read-only stream that hashes every byte read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.hash.update(data)
        return size


def _zstd_reader(raw: IO[bytes]) -> IO[bytes]:
    for module_name in ("compression.zstd", "zstandard"):
        try:
            module: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        if module_name == "zstandard":
            return module.ZstdDecompressor().stream_reader(raw)  # type: ignore[no-any-return]
        return module.ZstdFile(raw)  # type: ignore[no-any-return]
    raise ImagePullError("zstd-compressed layers need Python 3.14 or the zstandard package")


def _decompressed(raw: IO[bytes]) -> Any:
    """Wrap ``raw`` in the decompressor its first bytes call for (media types are not always right)."""
    buffered: Any = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, _CHUNK)
    head = buffered.peek(4)[:4]
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if head.startswith(_ZSTD_MAGIC):
        return _zstd_reader(buffered)
    return buffered


def _clean(name: str, what: str = "entry") -> str:
    """Return the archive name relative to the layer root, or refuse it."""
    if "\x00" in name:
        raise ImageRefused(f"layer {what} {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise ImageRefused(f"layer {what} {name!r} is an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ImageRefused(f"layer {what} {name!r} contains '..'")
    return "/".join(parts)


def remove_tree(path: Path) -> None:
    """Delete an unpacked tree, making read-only directories writable first (images have some)."""

    def retry(function: Callable[..., Any], failed: str, _info: Any) -> None:
        parent = os.path.dirname(failed)
        os.chmod(parent, stat.S_IMODE(os.lstat(parent).st_mode) | stat.S_IRWXU)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, stat.S_IMODE(os.lstat(failed).st_mode) | stat.S_IRWXU)
        function(failed)

    if os.path.lexists(path):
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=retry)
        else:
            shutil.rmtree(path, onerror=retry)


class _Extractor:
    def __init__(self, dest: Path, setuid: SetuidPolicy, max_bytes: int | None) -> None:
        self.dest = str(dest)
        self.max_bytes = max_bytes
        self.setuid = setuid
        self.root = os.geteuid() == 0
        self.dirs: dict[str, tuple[int, float]] = {}
        self.known_dirs: set[str] = {""}
        self.opaque: set[str] = set()
        self.whiteout_parents: set[str] = set()
        self.size = 0

    def host(self, rel: str) -> str:
        return os.path.join(self.dest, rel) if rel else self.dest

    def ensure_parents(self, rel: str, entry: str) -> None:
        """Make every directory above ``rel``; refuse if one of them is a symbolic link or not a directory."""
        parent = os.path.dirname(rel)
        if parent in self.known_dirs:
            return
        walked = ""
        for part in parent.split("/"):
            walked = f"{walked}/{part}" if walked else part
            if walked in self.known_dirs:
                continue
            path = self.host(walked)
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                os.mkdir(path, 0o755)
                self.known_dirs.add(walked)
                continue
            if stat.S_ISLNK(mode):
                raise ImageRefused(
                    f"layer entry {entry!r} would be written through the symbolic link {walked!r}"
                )
            if not stat.S_ISDIR(mode):
                raise ImageRefused(f"layer entry {entry!r} is below {walked!r}, which is not a directory")
            self.known_dirs.add(walked)

    def clear(self, rel: str, keep_dir: bool) -> None:
        """Remove what an earlier entry left at ``rel`` (a later entry of the same name wins)."""
        path = self.host(rel)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            if keep_dir:
                return
            remove_tree(Path(path))
            prefix = rel + "/"
            self.known_dirs = {d for d in self.known_dirs if d != rel and not d.startswith(prefix)}
            self.dirs = {d: v for d, v in self.dirs.items() if d != rel and not d.startswith(prefix)}
        else:
            os.unlink(path)

    def file_mode(self, member: tarfile.TarInfo, rel: str) -> int:
        mode = member.mode & 0o7777
        if mode & (stat.S_ISUID | stat.S_ISGID):
            if self.setuid == "refuse":
                raise ImageRefused(f"layer entry {rel!r} is setuid/setgid (mode {mode:o})")
            if self.setuid == "strip":
                mode &= ~(stat.S_ISUID | stat.S_ISGID)
        return mode | stat.S_IRUSR

    def whiteout(self, rel: str) -> None:
        path = self.host(rel)
        if os.path.lexists(path):
            return  # the layer itself has the name: the entry hides the lower one anyway
        if self.root:
            os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
        else:
            # Writable by its owner: without CAP_FOWNER, setting a user.* xattr needs write permission.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            os.setxattr(path, "user.overlay.whiteout", b"y", follow_symlinks=False)
            self.whiteout_parents.add(os.path.dirname(rel))

    def entry(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        rel = _clean(member.name)
        base = os.path.basename(rel)
        if base == _OPAQUE:
            parent = os.path.dirname(rel)
            self.ensure_parents(rel, member.name)
            self.opaque.add(parent)
            return
        if base.startswith(_WHITEOUT):
            hidden = os.path.join(os.path.dirname(rel), base[len(_WHITEOUT) :])
            _clean(hidden)
            if not base[len(_WHITEOUT) :] or base[len(_WHITEOUT) :] in (".", ".."):
                raise ImageRefused(f"layer whiteout {member.name!r} names no file")
            self.ensure_parents(hidden, member.name)
            self.whiteout(hidden)
            return
        if not rel:
            self.dirs[""] = (member.mode & 0o7777 | stat.S_IRWXU, member.mtime)
            return
        self.ensure_parents(rel, member.name)
        path = self.host(rel)
        if member.isdir():
            self.clear(rel, keep_dir=True)
            if not os.path.lexists(path):
                os.mkdir(path, 0o700)
            self.known_dirs.add(rel)
            self.dirs[rel] = (member.mode & 0o7777 | stat.S_IRUSR | stat.S_IXUSR, member.mtime)
            return
        self.clear(rel, keep_dir=False)
        if member.isreg():
            mode = self.file_mode(member, rel)
            if self.max_bytes is not None and self.size + member.size > self.max_bytes:
                # Checked before writing: a small compressed layer must not fill the disk.
                raise ImagePullError(
                    f"layer unpacks to more than {self.max_bytes} bytes (the image cache's limit)"
                )
            source = archive.extractfile(member)
            assert source is not None
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
            os.chmod(path, mode)
            self.size += member.size
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            target_rel = _clean(member.linkname, "hard link target")
            if not target_rel:
                raise ImageRefused(f"layer hard link {member.name!r} points at the layer's root")
            self.ensure_parents(target_rel, member.name)
            target = self.host(target_rel)
            try:
                target_mode = os.lstat(target).st_mode
            except FileNotFoundError:
                raise ImageRefused(
                    f"layer hard link {member.name!r} points at {member.linkname!r}, not earlier in the layer"
                ) from None
            if stat.S_ISDIR(target_mode):
                raise ImageRefused(f"layer hard link {member.name!r} points at a directory")
            os.link(target, path, follow_symlinks=False)
            return
        elif member.isfifo():
            os.mkfifo(path, member.mode & 0o777 | stat.S_IRUSR)
        elif member.ischr() or member.isblk():
            raise ImageRefused(f"layer entry {member.name!r} is a device node")
        else:
            raise ImageRefused(f"layer entry {member.name!r} has an unsupported type {member.type!r}")
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def finish(self) -> None:
        for rel in self.opaque:
            path = self.host(rel)
            os.setxattr(path, "user.overlay.opaque", b"y", follow_symlinks=False)
            if self.root:
                os.setxattr(path, "trusted.overlay.opaque", b"y", follow_symlinks=False)
        for rel in self.whiteout_parents - self.opaque:
            os.setxattr(self.host(rel), "user.overlay.opaque", b"x", follow_symlinks=False)
        # Deepest first, so setting a parent's mode never blocks fixing its children.
        for rel in sorted(self.dirs, key=lambda d: d.count("/") + (1 if d else 0), reverse=True):
            mode, mtime = self.dirs[rel]
            path = self.host(rel)
            os.chmod(path, mode)
            os.utime(path, (mtime, mtime), follow_symlinks=False)


def unpack_layer(
    source: IO[bytes], dest: Path, *, setuid: SetuidPolicy = "strip", max_bytes: int | None = None
) -> UnpackResult:
    """Unpack a layer archive (tar, gzip or zstd; detected from its first bytes) into ``dest``.

    Args:
        source: The archive as stored in the registry (compressed or not), read once from start to end.
        dest: A directory that does not exist yet; created here.
        setuid: What to do with setuid/setgid files: refuse the layer, strip the bits, or keep them.
        max_bytes: Most bytes of regular files the layer may unpack to (None: no limit).

    Returns:
        The digest of the uncompressed archive and the bytes written.

    Raises:
        ImageRefused: An entry escapes ``dest`` or is forbidden (``dest`` is left for the caller to remove).
        ImagePullError: The archive is corrupt.

    """
    os.mkdir(dest, 0o755)
    hashing = _HashingReader(_decompressed(source))
    stream = io.BufferedReader(hashing, _CHUNK)
    extractor = _Extractor(dest, setuid, max_bytes)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                extractor.entry(archive, member)
        # The archive may go on past the end-of-archive blocks: the digest covers every byte.
        while stream.read(_CHUNK):
            pass
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ImagePullError(f"corrupt layer archive: {error}") from error
    extractor.finish()
    return UnpackResult("sha256:" + hashing.hash.hexdigest(), extractor.size)
