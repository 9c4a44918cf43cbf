"""Fixtures for connector and import tests: a real S3 server (SeaweedFS), a server of our own, and helpers.

``s3`` is the session's S3 server (``s3_server``: ``weed mini`` on loopback with one identity, so a wrong
secret is refused) with one bucket holding the fixture objects of `BUCKET_OBJECTS`. ``server`` overrides the
shared one: this directory's tests need local connector roots in the environment, a data directory of their
own to scan, and every log record the server writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from imports_helpers import BUCKET_OBJECTS, S3, LogCapture
from weed_s3 import S3Server

if TYPE_CHECKING:
    from tilde.server import LocalServer


@pytest.fixture(scope="session")
def s3(s3_server: S3Server) -> S3:
    """The session's S3 server with a fresh bucket holding the fixture objects of `BUCKET_OBJECTS`."""
    return S3(
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
        bucket=s3_server.new_bucket(BUCKET_OBJECTS),
        region=s3_server.region,
    )


@pytest.fixture(scope="session")
def local_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one directory local connectors may read (``TILDE_SERVER_LOCAL_CONNECTOR_ROOTS``)."""
    return tmp_path_factory.mktemp("local-connector-root")


@pytest.fixture(scope="session")
def server_log() -> Iterator[LogCapture]:
    """Every record of the server's loggers (``tilde.server``, DEBUG and up) and of any other logger.

    Only ``tilde.server`` is turned up: this fixture lives as long as the session, and the SDK's own loggers
    must keep their levels for the tests that check what the SDK logs.
    """
    handler = LogCapture()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    server_logger = logging.getLogger("tilde.server")
    previous = server_logger.level
    root.addHandler(handler)
    server_logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        server_logger.setLevel(previous)
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
