"""Unpacking layers: links, whiteouts and opaque directories in overlayfs form, and crafted layers refused."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from oci_registry import build_image, digest_of, entry, files_layer, layer, push_image, run_registry

from tilde.server.images import ImagePullError, ImageRefused, ImageStore
from tilde.server.images import unpack as unpack_module
from tilde.server.images.unpack import unpack_layer


def unpack(data: bytes, dest: Path, **options: object) -> None:
    unpack_layer(io.BytesIO(data), dest, **options)  # type: ignore[arg-type]


def test_files_links_and_modes_are_unpacked(tmp_path: Path) -> None:
    data = layer(
        entry("usr/", kind=tarfile.DIRTYPE, mode=0o755),
        entry("usr/bin/", kind=tarfile.DIRTYPE, mode=0o555),
        entry("usr/bin/tool", b"#!/bin/sh\n", mode=0o755),
        entry("usr/bin/alias", kind=tarfile.LNKTYPE, linkname="usr/bin/tool"),
        entry("bin", kind=tarfile.SYMTYPE, linkname="usr/bin"),
        entry("etc/abs", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
        entry("run/fifo", kind=tarfile.FIFOTYPE, mode=0o600),
    )
    dest = tmp_path / "layer"
    unpack(data, dest)
    tool = dest / "usr/bin/tool"
    assert tool.read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755
    assert os.path.samefile(tool, dest / "usr/bin/alias")
    assert os.readlink(dest / "bin") == "usr/bin"
    # An absolute target is kept as it is: it points into the sandbox's root once mounted, never the host's.
    assert os.readlink(dest / "etc/abs") == "/etc/passwd"
    assert stat.S_ISFIFO(os.lstat(dest / "run/fifo").st_mode)
    assert stat.S_IMODE((dest / "usr/bin").stat().st_mode) == 0o555
    unpack_module.remove_tree(dest)
    assert not dest.exists()


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([entry("../escape", b"x")], "'..'"),
        ([entry("a/../../escape", b"x")], "'..'"),
        ([entry("/etc/cron.d/evil", b"x")], "absolute"),
        (
            [entry("link", kind=tarfile.SYMTYPE, linkname="/tmp"), entry("link/evil", b"x")],
            "symbolic link",
        ),
        (
            [entry("up", kind=tarfile.SYMTYPE, linkname="../../.."), entry("up/etc/evil", b"x")],
            "symbolic link",
        ),
        ([entry("passwd", kind=tarfile.LNKTYPE, linkname="../../etc/passwd")], "'..'"),
        ([entry("passwd", kind=tarfile.LNKTYPE, linkname="/etc/passwd")], "absolute"),
        (
            [
                entry("host", kind=tarfile.SYMTYPE, linkname="/etc"),
                entry("passwd", kind=tarfile.LNKTYPE, linkname="host/passwd"),
            ],
            "symbolic link",
        ),
        ([entry("dev/sda", kind=tarfile.BLKTYPE, devmajor=8)], "device"),
        ([entry("dev/mem", kind=tarfile.CHRTYPE, devmajor=1, devminor=1)], "device"),
        ([entry("dev/null0", kind=tarfile.CHRTYPE)], "device"),
        ([entry("usr/.wh...", b"")], "'..'"),
    ],
)
def test_crafted_layers_are_refused(tmp_path: Path, entries: list, reason: str) -> None:
    work = tmp_path / "work" / "deeper"
    work.mkdir(parents=True)
    with pytest.raises(ImageRefused, match=reason):
        unpack(layer(*entries), work / "layer")
    # Nothing was written outside the layer's directory (the caller removes the directory itself).
    assert [p.name for p in work.iterdir()] == ["layer"]
    assert [p.name for p in work.parent.iterdir()] == ["deeper"]
    assert not Path("/etc/cron.d/evil").exists()


def test_setuid_files_are_stripped_by_default_and_refused_on_request(tmp_path: Path) -> None:
    data = layer(entry("bin/su", b"elf", mode=0o4755), entry("bin/wall", b"elf", mode=0o2755))
    unpack(data, tmp_path / "strip")
    assert stat.S_IMODE((tmp_path / "strip/bin/su").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "strip/bin/wall").stat().st_mode) == 0o755
    with pytest.raises(ImageRefused, match="setuid"):
        unpack(data, tmp_path / "refuse", setuid="refuse")
    unpack(data, tmp_path / "keep", setuid="keep")
    assert stat.S_IMODE((tmp_path / "keep/bin/su").stat().st_mode) == 0o4755


def test_later_entry_of_the_same_name_wins(tmp_path: Path) -> None:
    data = layer(
        entry("a/b", b"old"),
        entry("a", kind=tarfile.SYMTYPE, linkname="/etc"),
        entry("f", b"first"),
        entry("f", b"second"),
    )
    unpack(data, tmp_path / "layer")
    assert os.readlink(tmp_path / "layer/a") == "/etc"
    assert (tmp_path / "layer/f").read_bytes() == b"second"


def _whiteout_layers() -> tuple[bytes, bytes]:
    lower = files_layer({"keep": b"k", "gone": b"g", "dir/old": b"o", "dir2/old": b"o", "dir2/stay": b"s"})
    upper = layer(
        entry(".wh.gone"),
        entry("dir/.wh..wh..opq"),
        entry("dir/new", b"n"),
        entry("dir2/.wh.old"),
    )
    return lower, upper


def _mounted_listing(lowers: list[Path], tmp_path: Path, *, userxattr: bool) -> list[str]:
    """Mount ``lowers`` (topmost first) as a read-only overlay in a private namespace; list every file."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to mount the overlay")
    merged = tmp_path / "merged"
    merged.mkdir()
    options = "lowerdir=" + ":".join(str(p) for p in lowers) + (",userxattr" if userxattr else "")
    flags = ["-Urm"] if userxattr else ["-m"]
    script = f'mount -t overlay overlay -o "{options}" "{merged}" && cd "{merged}" && find . -type f | sort'
    done = subprocess.run(
        ["unshare", *flags, "sh", "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_whiteouts_as_character_devices_hide_lower_files_in_an_overlay(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        # CI's unprivileged pass: only root can make the 0/0 device nodes (the next test covers that form).
        pytest.skip("device-node whiteouts are written by a store running as root")
    lower, upper = _whiteout_layers()
    unpack(lower, tmp_path / "l1")
    unpack(upper, tmp_path / "l2")
    gone = os.lstat(tmp_path / "l2/gone")
    assert stat.S_ISCHR(gone.st_mode)
    assert gone.st_rdev == 0
    assert os.getxattr(tmp_path / "l2/dir", "trusted.overlay.opaque") == b"y"
    listing = _mounted_listing([tmp_path / "l2", tmp_path / "l1"], tmp_path, userxattr=False)
    assert listing == ["./dir/new", "./dir2/stay", "./keep"]


def test_whiteouts_as_xattrs_hide_lower_files_in_an_unprivileged_overlay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The form a store running as an ordinary user writes (it cannot make device nodes).
    monkeypatch.setattr(unpack_module.os, "geteuid", lambda: 1000)
    lower, upper = _whiteout_layers()
    unpack(lower, tmp_path / "l1")
    unpack(upper, tmp_path / "l2")
    gone = os.lstat(tmp_path / "l2/gone")
    assert stat.S_ISREG(gone.st_mode)
    assert gone.st_size == 0
    assert os.getxattr(tmp_path / "l2/gone", "user.overlay.whiteout") == b"y"
    assert os.getxattr(tmp_path / "l2/dir", "user.overlay.opaque") == b"y"
    assert os.getxattr(tmp_path / "l2/dir2", "user.overlay.opaque") == b"x"
    monkeypatch.undo()
    listing = _mounted_listing([tmp_path / "l2", tmp_path / "l1"], tmp_path, userxattr=True)
    assert listing == ["./dir/new", "./dir2/stay", "./keep"]


def test_a_malicious_layer_from_a_registry_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    good = files_layer({"etc/os-release": b"ID=test\n"})
    evil = layer(
        entry("etc", kind=tarfile.SYMTYPE, linkname="/etc"), entry("etc/cron.d/evil", b"* * * * * x")
    )
    with run_registry(tmp_path / "registry") as registry:
        push_image(registry, "evil", "1", build_image([good, evil]))
        store = ImageStore(tmp_path / "images")
        with pytest.raises(ImageRefused, match="symbolic link"):
            asyncio.run(store.ensure(f"{registry.host}/evil:1"))
    assert store.list() == []
    assert store.get(f"{registry.host}/evil:1") is None
    layers = tmp_path / "images/layers"
    # Only the good layer may remain (unreferenced, collected by the next eviction); no temporary tree.
    assert all(not p.name.startswith(".tmp") for p in layers.iterdir())
    evil_blob = digest_of(build_image([good, evil]).blobs[1]).split(":")[1]
    assert not (tmp_path / "images/blobs/sha256" / evil_blob).exists()


def test_a_layer_the_file_system_cannot_hold_fails_the_pull_as_an_image_error(tmp_path: Path) -> None:
    # A name longer than the file system allows (255 bytes) is an OSError during extraction.
    too_long = files_layer({"x" * 300: b"data"})
    with run_registry(tmp_path / "registry") as registry:
        push_image(registry, "long", "1", build_image([too_long]))
        store = ImageStore(tmp_path / "images")
        with pytest.raises(ImagePullError, match="cannot unpack a layer"):
            asyncio.run(store.ensure(f"{registry.host}/long:1"))
    assert store.list() == []
    assert all(not p.name.startswith(".tmp") for p in (tmp_path / "images/layers").iterdir())


def test_a_layer_larger_than_the_whole_cache_is_refused_before_it_is_written(tmp_path: Path) -> None:
    # Eight MiB of zeros compress to a few KiB: the download is tiny, the unpacked layer would not be.
    bomb = files_layer({"zeros": bytes(8 * 1024 * 1024)})
    with run_registry(tmp_path / "registry") as registry:
        push_image(registry, "bomb", "1", build_image([bomb]))
        store = ImageStore(tmp_path / "images", max_bytes=1024 * 1024)
        with pytest.raises(ImagePullError, match="more than 1048576 bytes"):
            asyncio.run(store.ensure(f"{registry.host}/bomb:1"))
    assert store.list() == []
    assert list((tmp_path / "images/layers").iterdir()) == []
