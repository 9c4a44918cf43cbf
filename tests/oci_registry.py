"""A real OCI registry for tests: Debian's ``docker-registry`` (the CNCF distribution registry) on loopback.

`run_registry` starts it on a free port with its storage in a temporary directory (optionally behind htpasswd
basic auth: the registry provisions the user ``docker`` with a random password and prints it, which is read
back from its log), waits until ``/v2/`` answers, and stops it on exit. Images are built in the test from tar
layers made here (`layer`, `build_image`) and pushed with the distribution API (`push_image`, `push_index`).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.server
import io
import json
import re
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
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


# -- network helpers ------------------------------------------------------------------------------------


@dataclass
class CuttingProxy:
    """A TCP proxy in front of a registry that cuts one connection after it has sent ``cut_after`` bytes.

    Attributes:
        url: ``http://127.0.0.1:PORT`` of the proxy.
        sent: Bytes sent from the registry to clients, over every connection.
        cuts: Connections cut so far (at most one).

    """

    url: str
    cut_after: int
    sent: int = 0
    cuts: int = 0


@contextlib.contextmanager
def cutting_proxy(target: RunningRegistry | str, cut_after: int) -> Iterator[CuttingProxy]:
    """Run a `CuttingProxy` to ``target`` (a registry, or ``host:port``) on a free loopback port."""
    listener = socket.create_server(("127.0.0.1", 0))
    proxy = CuttingProxy(f"http://127.0.0.1:{listener.getsockname()[1]}", cut_after)
    lock = threading.Lock()
    stopping = threading.Event()
    port = int((target if isinstance(target, str) else target.host).rsplit(":", 1)[1])

    def pump(source: socket.socket, sink: socket.socket, count: bool) -> None:
        sent_here = 0
        try:
            while chunk := source.recv(65536):
                if count:
                    with lock:
                        if proxy.cuts == 0 and sent_here + len(chunk) > proxy.cut_after:
                            proxy.cuts += 1
                            keep = proxy.cut_after - sent_here
                            sink.sendall(chunk[:keep])
                            proxy.sent += keep
                            break
                        proxy.sent += len(chunk)
                    sent_here += len(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def serve() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", port))
            threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, True), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        stopping.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        thread.join(timeout=10)


@dataclass
class TokenGate:
    """A bearer-token front of a registry (Docker Hub's flow): 401 with a challenge, a token endpoint.

    Attributes:
        url: The front's base URL; registry API calls go through it.
        credentials: What the token endpoint wants as basic auth.
        tokens_issued: Tokens handed out.
        scopes: The ``scope`` parameters asked for.

    """

    url: str
    credentials: tuple[str, str] | None
    tokens_issued: int = 0
    scopes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def token_gate(
    target: RunningRegistry, credentials: tuple[str, str] | None, *, honour_range: bool = True
) -> Iterator[TokenGate]:
    """Serve `TokenGate` in front of ``target`` (which must not need auth itself).

    With ``honour_range=False`` it drops ``Range`` headers, as some registries and CDNs do (a ``200`` with
    the whole blob answers a request for its tail).
    """
    token = secrets.token_hex(16)
    # None: anonymous tokens for anyone who asks, as Docker Hub gives for public images.
    expected_basic = (
        "Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        if credentials
        else None
    )
    upstream = httpx.Client(base_url=target.url, timeout=60)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/token"):
                if expected_basic is not None and self.headers.get("Authorization") != expected_basic:
                    self._reply(401, b"{}", {"Content-Type": "application/json"})
                    return
                query = dict(item.split("=", 1) for item in self.path.split("?", 1)[1].split("&"))
                gate.scopes.append(query.get("scope", "").replace("%3A", ":").replace("%2F", "/"))
                gate.tokens_issued += 1
                self._reply(200, json.dumps({"token": token}).encode(), {"Content-Type": "application/json"})
                return
            if self.headers.get("Authorization") != f"Bearer {token}":
                repository = "/".join(self.path.split("?")[0].split("/")[2:-2])
                scope = f"repository:{repository}:pull"
                challenge = f'Bearer realm="{gate.url}/token",service="tests",scope="{scope}"'
                self._reply(401, b"{}", {"WWW-Authenticate": challenge, "Content-Type": "application/json"})
                return
            forwarded = ("accept", "range") if honour_range else ("accept",)
            headers = {k: v for k, v in self.headers.items() if k.lower() in forwarded}
            answer = upstream.get(self.path, headers=headers)
            keep = ("content-type", "docker-content-digest", "content-range")
            self._reply(
                answer.status_code, answer.content, {k: v for k, v in answer.headers.items() if k in keep}
            )

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gate = TokenGate(f"http://127.0.0.1:{server.server_address[1]}", credentials)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gate
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()
        thread.join(timeout=10)
