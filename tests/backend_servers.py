"""The ``server`` fixture of the end-to-end tests: one real tilde-server (or cluster) per backend spec.

The root conftest.py's module-scoped ``server`` asks the session's `ServerPool` for the server of its module's
directory and backend spec (see `ServerPool` for why).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cluster import ClusterServer
    from pg_server import PostgresServer
    from weed_s3 import S3Server

    from tilde.server import LocalServer

__all__ = ["BACKENDS", "CLUSTER", "CLUSTER_REPLICAS", "ServerPool", "serve_backend"]

#: Storage backends a server fixture can run on, joined by ``+`` in a backend spec ("local": the defaults).
BACKENDS = ("local", "s3", "postgres")
#: The backend spec of a three-replica cluster on PostgreSQL + S3 behind a random-per-request balancer.
CLUSTER = "cluster"
CLUSTER_REPLICAS = 3


def serve_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, server_backend: str
) -> Iterator[LocalServer | ClusterServer]:
    """Run a real tilde-server on a free loopback port, with its own data directory, on ``server_backend``.

    The spec ``"cluster"`` gives a `cluster.ClusterServer` instead: three ``tilde-server serve`` replicas on a
    fresh database and bucket, each request to a random one (see ``tests/cluster.py``).
    """
    from tilde.server import LocalServer, ServerConfig

    if server_backend == CLUSTER:
        from cluster import run_cluster

        with run_cluster(
            CLUSTER_REPLICAS,
            postgres=request.getfixturevalue("postgres_server"),
            s3=request.getfixturevalue("s3_server"),
            root=tmp_path_factory.mktemp("tilde-cluster"),
        ) as cluster:
            yield cluster
        return
    parts = set(server_backend.split("+"))
    unknown = parts - set(BACKENDS)
    assert not unknown, f"unknown server backends {sorted(unknown)} in {server_backend!r}"
    config = ServerConfig(data_dir=tmp_path_factory.mktemp(f"tilde-server-{server_backend}"))
    if "s3" in parts:
        s3: S3Server = request.getfixturevalue("s3_server")
        config.blob_store = f"s3://{s3.new_bucket({})}/tilde"
        config.s3_endpoint_url = s3.endpoint_url
        config.s3_region = s3.region
        config.s3_credentials = (s3.access_key_id, s3.secret_access_key)
    if "postgres" in parts:
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        config.database_url = postgres.new_database()
    with LocalServer(config=config) as srv:
        yield srv


class ServerPool:
    """The session's running test server: one at a time, for one test directory and backend spec.

    ``server`` is module-scoped and asks the pool for its module's (directory, backend) pair: the same pair
    gets the running server again, another pair stops it and starts its own. Keying by directory keeps each
    suite on a fresh server of its own (as when ``server`` was one session fixture), and asking again for
    every module is what makes a suite always get the backend it asked for: pytest caches a fixture by its own
    parameter only, so a session ``server`` set up for one directory's last backend was handed unchanged to
    the first tests of the next directory, whatever backend those asked for.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp_path_factory = tmp_path_factory
        self._key: tuple[str, str] | None = None
        self._server: LocalServer | ClusterServer | None = None
        self._stack = ExitStack()

    def get(self, request: pytest.FixtureRequest, directory: str, spec: str) -> LocalServer | ClusterServer:
        """Return the server for ``directory`` on backend ``spec`` (stopping another one first)."""
        if self._key == (directory, spec) and self._server is not None:
            return self._server
        self.close()
        self._server = self._stack.enter_context(
            contextmanager(serve_backend)(request, self._tmp_path_factory, spec)
        )
        self._key = (directory, spec)
        return self._server

    def close(self) -> None:
        """Stop the running server, if any."""
        self._key, self._server = None, None
        stack, self._stack = self._stack, ExitStack()
        stack.close()
