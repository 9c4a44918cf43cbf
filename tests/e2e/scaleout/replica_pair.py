"""Two replicas of one cluster in the test process: two servers and data directories, one PostgreSQL database.

Each replica has its own caches, its own trigger dispatcher and its own upload secret file, exactly like a
replica on another machine; only the database, the bucket of blobs (`shared_bucket`: replicas of a cluster
must share one) and the master key (a deployment gives every replica the same ``TILDE_SERVER_MASTER_KEY``)
are shared. Requests go over real HTTP to each replica's own port, which
is what a load balancer sending consecutive requests to different replicas amounts to.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from weed_s3 import S3Server

from tilde.server import LocalServer, ServerConfig
from tilde.server.crypto import MASTER_KEY_ENV


def new_master_key() -> str:
    """A fresh master key in the form ``TILDE_SERVER_MASTER_KEY`` takes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@contextmanager
def master_key(value: str) -> Iterator[None]:
    """Set ``TILDE_SERVER_MASTER_KEY`` for the block (servers read it when they start)."""
    old = os.environ.get(MASTER_KEY_ENV)
    os.environ[MASTER_KEY_ENV] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(MASTER_KEY_ENV, None)
        else:
            os.environ[MASTER_KEY_ENV] = old


def shared_bucket(s3: S3Server) -> dict[str, Any]:
    """Settings that keep blobs in a fresh bucket of ``s3``: give every replica of one cluster the same."""
    return {
        "blob_store": f"s3://{s3.new_bucket({})}/tilde",
        "s3_endpoint_url": s3.endpoint_url,
        "s3_region": s3.region,
        "s3_credentials": (s3.access_key_id, s3.secret_access_key),
    }


@dataclass
class Replica:
    """One running replica, an admin client on its ``/api/v1``, and the keys it was started with."""

    server: LocalServer
    admin: httpx.Client
    admin_key: str
    master_key: str

    @property
    def url(self) -> str:
        return self.server.endpoint_url.rstrip("/")

    def client(self, token: str) -> httpx.Client:
        """A client of this replica's ``/api/v1`` authenticated with ``token`` (close it)."""
        return httpx.Client(
            base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )


def start_replica(data_dir: Path, database_url: str, admin_key: str, key: str, **settings: Any) -> Replica:
    """Start one replica (stop it with ``replica.server.stop()`` and close ``replica.admin``)."""
    config = ServerConfig(data_dir=data_dir, database_url=database_url, admin_key=admin_key, **settings)
    with master_key(key):
        server = LocalServer(config=config).start()
    admin = httpx.Client(
        base_url=server.endpoint_url.rstrip("/") + "/api/v1",
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=60,
    )
    return Replica(server, admin, admin_key, key)


@contextmanager
def two_replicas(database_url: str, root: Path, **settings: Any) -> Iterator[tuple[Replica, Replica]]:
    """Run replicas A and B on ``database_url``, data directories under ``root``, both with ``settings``.

    Give them a `shared_bucket`: replicas keeping blob files in their own data directories are refused.
    """
    admin_key = "tuk-" + secrets.token_urlsafe(32)
    key = new_master_key()
    first = start_replica(root / "a", database_url, admin_key, key, **settings)
    try:
        second = start_replica(root / "b", database_url, admin_key, key, **settings)
        try:
            yield first, second
        finally:
            second.admin.close()
            second.server.stop()
    finally:
        first.admin.close()
        first.server.stop()
