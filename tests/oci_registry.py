"""A real OCI registry for tests: Debian's ``docker-registry`` (the CNCF distribution registry) on loopback.

`run_registry` starts it on a free port with its storage in a temporary directory (optionally behind htpasswd
basic auth: the registry provisions the user ``docker`` with a random password and prints it, which is read
back from its log), waits until ``/v2/`` answers, and stops it on exit. Images are built in the test from tar
layers made here (`layer`, `build_image`) and pushed with the distribution API (`push_image`, `push_index`).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

START_TIMEOUT = 30.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def free_port() -> int:
    """Return a TCP port free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def digest_of(data: bytes) -> str:
    """Return the ``sha256:`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class RunningRegistry:
    """A registry process.

    Attributes:
        host: ``127.0.0.1:PORT``, as image references name it.
        url: ``http://127.0.0.1:PORT``.
        credentials: ``(user, password)`` when started with auth, else None.
        root: The directory holding its config, storage and log.

    """

    host: str
    url: str
    credentials: tuple[str, str] | None
    root: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def log(self) -> str:
        """Return the registry's log so far."""
        return (self.root / "registry.log").read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def run_registry(root: Path | None = None, *, auth: bool = False) -> Iterator[RunningRegistry]:
    """Start ``docker-registry`` on a free loopback port; yield it; stop it and remove its files.

    Args:
        root: Directory for its files (default: a new temporary one, removed afterwards).
        auth: Require htpasswd basic auth (user ``docker``, a random password the registry makes).

    """
    own = root is None
    base = Path(tempfile.mkdtemp(prefix="oci-registry-")) if root is None else root
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = (
        "version: 0.1\nlog:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    if auth:
        config += f"auth:\n  htpasswd:\n    realm: tests\n    path: {base / 'htpasswd'}\n"
    (base / "registry.yml").write_text(config, encoding="utf-8")
    log = (base / "registry.log").open("wb")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(base / "registry.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    registry = RunningRegistry(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", None, base, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, registry.log()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{registry.url}/v2/", timeout=2).status_code in (200, 401):
                    break
            assert time.monotonic() < deadline, f"the registry did not start:\n{registry.log()}"
            time.sleep(0.05)
        if auth:
            found = re.search(r"password=(\S+) user=(\S+)", registry.log())
            assert found, registry.log()
            registry.credentials = (found.group(2), found.group(1))
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        if own:
            shutil.rmtree(base, ignore_errors=True)


# -- building images ------------------------------------------------------------------------------------


def entry(
    name: str,
    data: bytes | None = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    mode: int = 0o644,
    linkname: str = "",
    devmajor: int = 0,
    devminor: int = 0,
) -> tuple[tarfile.TarInfo, bytes | None]:
    """Return one tar entry: a file (default), or ``kind`` DIRTYPE, SYMTYPE, LNKTYPE, CHRTYPE …"""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1_700_000_000
    info.linkname = linkname
    info.devmajor, info.devminor = devmajor, devminor
    if kind == tarfile.REGTYPE:
        info.size = len(data or b"")
    else:
        data = None
    return info, data


def layer(*entries: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    """Return an uncompressed tar holding ``entries`` in order (no checks: tests craft bad ones too)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def files_layer(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    """Return a layer of regular files (their directories implied)."""
    return layer(*(entry(name, data, mode=mode) for name, data in files.items()))


@dataclass
class TestImage:
    """An image built in a test, ready to push.

    Attributes:
        manifest: The manifest document.
        digest: Its digest.
        config: The configuration blob.
        blobs: Compressed layer blobs, bottom first.
        diff_ids: Uncompressed layer digests.
        media_type: The manifest's media type.

    """

    __test__ = False

    manifest: bytes
    digest: str
    config: bytes
    blobs: list[bytes]
    diff_ids: list[str]
    media_type: str


def build_image(
    layers: Sequence[bytes],
    *,
    env: Sequence[str] = ("PATH=/usr/local/bin:/usr/bin:/bin",),
    cmd: Sequence[str] | None = ("/bin/sh",),
    entrypoint: Sequence[str] | None = None,
    user: str = "",
    working_dir: str = "",
    architecture: str = "amd64",
    docker: bool = False,
) -> TestImage:
    """Build an image from uncompressed tar layers (gzipped here), in OCI or Docker v2 schema 2 form."""
    blobs = [gzip.compress(data, compresslevel=1, mtime=0) for data in layers]
    diff_ids = [digest_of(data) for data in layers]
    runtime: dict[str, Any] = {"Env": list(env)}
    if cmd is not None:
        runtime["Cmd"] = list(cmd)
    if entrypoint is not None:
        runtime["Entrypoint"] = list(entrypoint)
    if user:
        runtime["User"] = user
    if working_dir:
        runtime["WorkingDir"] = working_dir
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": DOCKER_LAYER if docker else OCI_LAYER_GZIP,
                    "digest": digest_of(blob),
                    "size": len(blob),
                }
                for blob in blobs
            ],
        }
    ).encode()
    return TestImage(manifest, digest_of(manifest), config, blobs, diff_ids, media_type)


# -- pushing --------------------------------------------------------------------------------------------


def _client(registry: RunningRegistry) -> httpx.Client:
    return httpx.Client(base_url=registry.url, auth=registry.credentials, timeout=60)


def push_blob(client: httpx.Client, repository: str, data: bytes) -> str:
    """Upload one blob (monolithic upload) unless the registry has it; return its digest."""
    digest = digest_of(data)
    if client.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
        return digest
    started = client.post(f"/v2/{repository}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    separator = "&" if "?" in location else "?"
    done = client.put(
        f"{location}{separator}digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    return digest


def push_image(registry: RunningRegistry, repository: str, tag: str, image: TestImage) -> str:
    """Push ``image`` as ``repository:tag``; return its manifest digest."""
    with _client(registry) as client:
        for blob in [image.config, *image.blobs]:
            push_blob(client, repository, blob)
        put = client.put(
            f"/v2/{repository}/manifests/{tag}",
            content=image.manifest,
            headers={"Content-Type": image.media_type},
        )
        assert put.status_code == 201, put.text
    return image.digest


def push_index(
    registry: RunningRegistry, repository: str, tag: str, images: Sequence[tuple[TestImage, str, str]]
) -> str:
    """Push ``(image, architecture, variant)`` and an OCI index of them as ``tag``; return its digest."""
    with _client(registry) as client:
        manifests = []
        for image, architecture, variant in images:
            for blob in [image.config, *image.blobs]:
                push_blob(client, repository, blob)
            put = client.put(
                f"/v2/{repository}/manifests/{image.digest}",
                content=image.manifest,
                headers={"Content-Type": image.media_type},
            )
            assert put.status_code == 201, put.text
            platform = {"os": "linux", "architecture": architecture}
            if variant:
                platform["variant"] = variant
            manifests.append(
                {
                    "mediaType": image.media_type,
                    "digest": image.digest,
                    "size": len(image.manifest),
                    "platform": platform,
                }
            )
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        put = client.put(
            f"/v2/{repository}/manifests/{tag}", content=index, headers={"Content-Type": OCI_INDEX}
        )
        assert put.status_code == 201, put.text
    return digest_of(index)
