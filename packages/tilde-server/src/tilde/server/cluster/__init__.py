"""The cluster a server belongs to (``app.state.cluster``): its node id, its peers and how to reach them.

A server whose metadata lives in PostgreSQL (``--database-url``) is a node of the cluster sharing that
database; a single replica is a one-node cluster. Nodes announce themselves in the ``cluster_nodes`` table and
renew a lease there (see `tilde.server.cluster.nodes`). A server on SQLite is a trivial cluster of itself:
``enabled`` is False, no table, no thread.

`Cluster` is what the rest of the server uses:

- ``node_id``: this node's id (``serve --node-id``; default: generated once, kept in the data directory);
- ``url``: the base URL other nodes reach this one at (``serve --node-url``; default ``http://HOST:PORT``);
- ``enabled``: whether this is a node of a PostgreSQL cluster;
- ``secret``: the key that signs requests one node forwards to another;
- ``runs_sandboxes``: whether this node runs sandboxes (``serve --no-sandboxes`` turns it off);
- ``node_url(node_id)``: the base URL of a live node (None when dead or unknown);
- ``sandbox_nodes()``: ``(node_id, url)`` of the live nodes that run sandboxes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import socket
from pathlib import Path
from typing import Any

from tilde.server.config import write_private_file

__all__ = [
    "CLUSTER_SCHEMA",
    "NODE_ID_FILE",
    "Cluster",
    "default_node_url",
    "derive_secret",
    "make_cluster",
    "resolve_node_id",
    "valid_node_id",
]

#: The PostgreSQL schema of the cluster's own tables (nodes, sandbox records, shared settings).
CLUSTER_SCHEMA = "tilde_cluster"
#: Where a data directory remembers its node id.
NODE_ID_FILE = "node_id"
_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def valid_node_id(node_id: str) -> bool:
    """Whether ``node_id`` is a usable node id (1 to 63 letters, digits, ``.``, ``_`` or ``-``)."""
    return bool(_NODE_ID.fullmatch(node_id))


def resolve_node_id(data_dir: Path, node_id: str | None, *, remember: bool = True) -> str:
    """Return this node's id: the one given, else the one the data directory remembers (made once).

    Args:
        data_dir: The data directory (existing).
        node_id: The id given on the command line or in the configuration, or None.
        remember: Write a generated id to the data directory (a server on SQLite needs no lasting id and
            leaves its data directory as it was).

    Raises:
        ValueError: The id given is not a valid node id.

    """
    if node_id:
        if not valid_node_id(node_id):
            raise ValueError(f"invalid node id {node_id!r}: use 1 to 63 letters, digits, '.', '_' or '-'")
        return node_id
    path = Path(data_dir) / NODE_ID_FILE
    if path.exists():
        remembered = path.read_text(encoding="utf-8").strip()
        if valid_node_id(remembered):
            return remembered
    generated = "node-" + secrets.token_hex(6)
    if remember:
        write_private_file(path, generated.encode() + b"\n")
    return generated


def default_node_url(host: str, port: int) -> str:
    """Return ``http://HOST:PORT`` for a listening address (a wildcard host becomes this machine's name)."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Cluster:
    """The trivial cluster of a server on SQLite: this node alone, no table, no thread.

    `tilde.server.cluster.nodes.NodeCluster` is the PostgreSQL one; both have the same attributes.

    Args:
        node_id: This node's id.
        url: The base URL this node is reached at.
        secret: The key of signed internal requests.
        runs_sandboxes: Whether this node runs sandboxes.

    """

    enabled = False

    def __init__(self, node_id: str, url: str, secret: bytes, *, runs_sandboxes: bool = True) -> None:
        self.node_id = node_id
        self.url = url.rstrip("/")
        self.secret = secret
        self.runs_sandboxes = runs_sandboxes

    def node_url(self, node_id: str) -> str | None:
        """Return the base URL of the live node ``node_id`` (None when it is dead or unknown)."""
        return self.url if node_id == self.node_id else None

    def sandbox_nodes(self) -> list[tuple[str, str]]:
        """Return ``(node_id, url)`` of the live nodes that run sandboxes."""
        return [(self.node_id, self.url)] if self.runs_sandboxes else []

    def close(self) -> None:
        """Leave the cluster (nothing to do for a node alone)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(node_id={self.node_id!r}, url={self.url!r})"


def make_cluster(config: Any, *, secret: bytes) -> Cluster:
    """Return the cluster of a server: a `NodeCluster` on PostgreSQL, else the trivial `Cluster`.

    Args:
        config: The `tilde.server.config.ServerConfig` (``data_dir``, ``database_url``, ``node_id``,
            ``node_url``, ``host``, ``port``, ``sandboxes``).
        secret: A key for internal requests until the shared one is known (on PostgreSQL every node must
            use the same; the cluster settings replace it).

    """
    node_id = resolve_node_id(
        config.data_dir, getattr(config, "node_id", None), remember=bool(config.database_url)
    )
    url = getattr(config, "node_url", None) or default_node_url(config.host, config.port)
    runs_sandboxes = bool(getattr(config, "sandboxes", True))
    if not config.database_url:
        return Cluster(node_id, url, secret, runs_sandboxes=runs_sandboxes)
    from tilde.server._db import PostgresDatabase
    from tilde.server.cluster.nodes import NodeCluster

    return NodeCluster(
        PostgresDatabase(config.database_url, CLUSTER_SCHEMA),
        node_id,
        url,
        secret,
        runs_sandboxes=runs_sandboxes,
        lease_seconds=float(getattr(config, "node_lease_seconds", 10.0)),
        home=f"{socket.gethostname()}:{Path(config.data_dir).resolve()}",
    )


def derive_secret(key: bytes, purpose: str) -> bytes:
    """Return a key for ``purpose`` derived from ``key`` (HMAC-SHA256)."""
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()
