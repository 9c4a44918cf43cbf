"""Test images built during the test run, packed as OCI image layouts with ``umoci`` and cached.

Two images:

- `minimal_image`: a tiny tree of a few host binaries (``dash`` as ``/bin/sh``, ``cat``, ``id``, ``ls`` and
  the libraries they need) in two layers (the second deletes a file of the first and makes a directory
  opaque), with ``Env``, ``WorkingDir``, ``User`` and ``Entrypoint``/``Cmd`` set. Seconds to build.
- `python_image`: a Debian root filesystem with ``python3``, ``python3-pip`` and ``python-is-python3`` from
  ``mmdebstrap`` (about a minute, then cached), configured like the official ``python`` images: no
  ``EXTERNALLY-MANAGED`` marker (so ``pip install`` works), ``Cmd ["python3"]``.

Images are cached between runs under ``$TILDE_TEST_CACHE`` (default ``~/.cache/tilde-tests``), named with a
recipe version, and made available to a server by pushing them to a registry with `push` (``skopeo``).
Device nodes and setuid/setgid bits are dropped from the Debian tree (an image store refuses them).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "MINIMAL_USER",
    "cache_dir",
    "minimal_image",
    "push",
    "python_image",
]

#: The user the minimal image names in its config (``User: app``), from its own ``/etc/passwd``.
MINIMAL_USER = (4321, 4322)
#: Part of every cached image's name: raise it when a recipe changes, so stale images are rebuilt.
_RECIPES = "1"
_HOME = Path.home()  # read at import: tests later point HOME at their own temporary directories


def cache_dir() -> Path:
    """The directory that keeps built images between test runs."""
    configured = os.environ.get("TILDE_TEST_CACHE")
    root = Path(configured) if configured else _HOME / ".cache" / "tilde-tests"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(name: str) -> Iterator[Path]:
    """Hold the build lock of one cached image (parallel test processes build it once)."""
    root = cache_dir()
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root / f"{name}-v{_RECIPES}"


def _umoci(*args: str) -> None:
    subprocess.run(["umoci", *args], check=True, capture_output=True, timeout=600)


def _pack(layout: Path, layers: list[Path], config: list[str]) -> None:
    """Make an OCI layout at ``layout`` (tag ``latest``) from layer tarballs and ``umoci config`` options."""
    tmp = layout.with_name(layout.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    image = f"{tmp}:latest"
    _umoci("init", "--layout", str(tmp))
    _umoci("new", "--image", image)
    for layer in layers:
        _umoci("raw", "add-layer", "--image", image, str(layer))
    _umoci("config", "--image", image, *config)
    _umoci("gc", "--layout", str(tmp))
    tmp.rename(layout)


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644, **kind: object) -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    for key, value in kind.items():
        setattr(info, key, value)
    if info.type == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _dependencies(binary: str) -> list[str]:
    """The shared libraries (and loader) a host binary needs, from ``ldd``."""
    output = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    found = []
    for line in output.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            found.append(path)
    return found


def _minimal_layers(work: Path) -> list[Path]:
    first, second = work / "base.tar", work / "change.tar"
    binaries = {"bin/sh": shutil.which("dash") or "/bin/sh"}
    for tool in ("cat", "id", "ls", "touch"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to build the minimal test image"
        binaries[f"bin/{tool}"] = found
    libraries: set[str] = set()
    for source in binaries.values():
        libraries.update(_dependencies(source))
    directories = {"bin", "etc", "app", "tmp", "olddir", "home", "home/app"}
    for library in libraries:
        parts = library.strip("/").split("/")[:-1]
        directories.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    with tarfile.open(first, "w") as tar:
        for directory in sorted(directories):
            _add(tar, directory, type=tarfile.DIRTYPE, mode=0o1777 if directory == "tmp" else 0o755)
        for target, source in binaries.items():
            _add(tar, target, Path(source).read_bytes(), mode=0o755)
        for library in sorted(libraries):
            # At the host's path: the loader finds them where the binaries were linked to look.
            _add(tar, library.strip("/"), Path(os.path.realpath(library)).read_bytes(), mode=0o755)
        _add(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:4321:4322:app:/home/app:/bin/sh\n")
        _add(tar, "etc/group", b"root:x:0:\napp:x:4322:\n")
        _add(tar, "etc/image-release", b"tilde minimal test image\n")
        _add(tar, "removed.txt", b"deleted by the second layer\n")
        _add(tar, "olddir/hidden.txt", b"hidden by the opaque directory of the second layer\n")
    with tarfile.open(second, "w") as tar:
        _add(tar, ".wh.removed.txt")
        _add(tar, "olddir", type=tarfile.DIRTYPE, mode=0o755)
        _add(tar, "olddir/.wh..wh..opq")
        _add(tar, "olddir/new.txt", b"from the second layer\n")
        _add(tar, "app/entry.txt", b"working directory of the image\n")
    return [first, second]


def minimal_image() -> Path:
    """The minimal image's OCI layout (tag ``latest``), built once and cached.

    Config: ``Env`` ``PATH=/bin`` and ``GREETING=hello from the image``, ``WorkingDir /app``, ``User app``
    (uid 4321, gid 4322), ``Entrypoint ["/bin/sh", "-c"]``, ``Cmd`` that prints the greeting, the working
    directory and the user id.
    """
    with _locked("minimal") as layout:
        if not layout.is_dir():
            with tempfile.TemporaryDirectory(dir=cache_dir()) as work:
                layers = _minimal_layers(Path(work))
                _pack(
                    layout,
                    layers,
                    [
                        "--config.env=PATH=/bin",
                        "--config.env=GREETING=hello from the image",
                        "--config.workingdir=/app",
                        "--config.user=app",
                        "--config.entrypoint=/bin/sh",
                        "--config.entrypoint=-c",
                        '--config.cmd=echo "$GREETING"; pwd; id -u; cat entry.txt',
                    ],
                )
        return layout


def _clean_tree(source: Path, target: Path) -> None:
    """Copy a root filesystem tarball without device nodes and setuid/setgid bits, without the PEP 668
    marker, and with ``/dev`` empty.
    """
    with tarfile.open(source) as src, tarfile.open(target, "w") as dst:
        for member in src:
            name = member.name.removeprefix("./")
            if not name or member.isdev() or name.endswith("/EXTERNALLY-MANAGED"):
                continue
            member.name = name
            member.mode &= 0o1777
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)


def python_image() -> Path:
    """The Debian python image's OCI layout (tag ``latest``), built with mmdebstrap once and cached."""
    with _locked("python") as layout:
        if not layout.is_dir():
            with tempfile.TemporaryDirectory(dir=cache_dir()) as work:
                raw, clean = Path(work) / "raw.tar", Path(work) / "rootfs.tar"
                subprocess.run(
                    [
                        "mmdebstrap",
                        "--variant=apt",
                        "--include=python3,python3-pip,python-is-python3",
                        "--dpkgopt=path-exclude=/usr/share/doc/*",
                        "--dpkgopt=path-exclude=/usr/share/man/*",
                        "--dpkgopt=path-exclude=/usr/share/locale/*",
                        "--format=tar",
                        "bookworm",
                        str(raw),
                    ],
                    check=True,
                    capture_output=True,
                    timeout=900,
                )
                _clean_tree(raw, clean)
                raw.unlink()
                _pack(
                    layout,
                    [clean],
                    [
                        "--config.env=PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "--config.env=LANG=C.UTF-8",
                        "--config.cmd=python3",
                    ],
                )
        return layout


def push(layout: Path, destination: str) -> None:
    """Push an OCI layout's ``latest`` to a registry on loopback (``host:port/name:tag``) with skopeo."""
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{layout}:latest",
            f"docker://{destination}",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
