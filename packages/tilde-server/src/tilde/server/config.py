"""Server settings (`ServerConfig`) and the small secrets kept in the data directory."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tilde.server._db import Location, database_location

#: Files in the data directory (besides the engine's own).
ADMIN_KEY_FILE = "admin_key"
UPLOAD_SECRET_FILE = "upload_secret"
REGISTRY_FILE = "registry.sqlite3"
#: The PostgreSQL URL a data directory was last served with (0600): commands on the directory use it too.
DATABASE_URL_FILE = "database_url"
BLOB_STORE_FILE = "blob_store"


@dataclass
class ServerConfig:
    """Settings for one tilde-server instance.

    Attributes:
        data_dir: Where everything is stored (registry, engine metadata, blobs, secrets).
        host: Interface to listen on (loopback by default).
        port: TCP port (0 picks a free one).
        admin_key: The admin user's API key; None reads it from ``data_dir/admin_key`` or generates one there.
        public_url: The externally visible base URL (``http://host:port``) used in the absolute URLs the
            server hands out (upload URLs, approval links); None uses ``http://host:port`` of the address the
            server listens on (for a wildcard host, the local address each connection arrived at). The
            request's ``Host`` header is never used.
        upload_url_ttl: Lifetime in seconds of presigned upload URLs.
        approval_web_url: Template for the web link of a pending approval; ``{base}``, ``{org}``,
            ``{repo}`` and ``{session_id}`` are substituted.
        sandbox: Free-form settings read by the sandbox runtime (``tilde.server.sandbox``), if present.
        max_connections: Most open client connections; None derives it from the descriptor limit (see
            `tilde.server.connection_guard.derive_limits`).
        max_connections_per_address: Most open connections from one client address; None derives it, 0 means
            no per-address cap (behind a reverse proxy every client has the proxy's address).
        header_timeout: Seconds a connection may take to send a complete request header block, counted from
            its start or the end of its previous response; requests in progress are never timed out.
        keep_alive_timeout: Seconds an idle keep-alive connection stays open.
        max_header_bytes: Largest request line plus headers accepted (larger: ``431``).
        blob_store: Where blobs live: None for files under ``data_dir/blobs``, or ``s3://bucket[/prefix]``
            for an S3-compatible object store (see `tilde.server.storage.s3blobs`).
        s3_endpoint_url: The object store's URL for an ``s3://`` blob store (None: AWS S3); clients upload
            to and download from presigned URLs there, so it must be reachable by them.
        s3_public_endpoint_url: The object store's URL as clients reach it, when it differs from
            ``s3_endpoint_url`` (which the server itself uses); presigned URLs are signed for it.
        s3_region: Region of the object store (None: the standard AWS configuration, else ``us-east-1``).
        s3_credentials: ``(access_key_id, secret_access_key)`` for the object store; None uses the standard
            AWS credential chain (environment variables, shared files, instance roles).
        blob_cache_bytes: Capacity of the node-local cache of blob files used with an ``s3://`` blob store.
        database_url: A ``postgresql://`` URL: the registry, the engine's metadata and the triggers live in
            that database (schemas ``tilde_registry``, ``tilde_meta``, ``tilde_triggers``) instead of SQLite
            files in ``data_dir``; needs the ``tilde-server[postgres]`` extra.
        image_cache_bytes: Most unpacked bytes of sandbox images kept under ``data_dir/images``; least
            recently used images not in use are removed past it. None: no limit.
        registry_mirrors: Registry mirrors (``https://…``, or ``http://…`` on loopback or a private network)
            asked first for Docker Hub images (``python:3.12``), in order.
        registry_credentials: Registry host (``host[:port]``, ``docker.io`` for Docker Hub) ->
            ``(username, password)`` for pulls from private registries.
        node_id: This server's id in a PostgreSQL cluster; None uses the one the data directory remembers
            (generated once). See `tilde.server.cluster`.
        node_url: The base URL other replicas reach this one at; None uses ``http://host:port``.
        sandboxes: Whether this server runs sandboxes (False: an API-only replica of a cluster).
        node_lease_seconds: How long a cluster node counts as alive after its last heartbeat.

    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8900
    admin_key: str | None = None
    public_url: str | None = None
    upload_url_ttl: float = 3600.0
    approval_web_url: str = "{base}/{org}/{repo}/approve/{session_id}"
    sandbox: dict[str, Any] = field(default_factory=dict)
    max_connections: int | None = None
    max_connections_per_address: int | None = None
    header_timeout: float = 20.0
    keep_alive_timeout: float = 5.0
    max_header_bytes: int = 64 * 1024
    blob_store: str | None = None
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_credentials: tuple[str, str] | None = field(default=None, repr=False)
    blob_cache_bytes: int = 10 * 1024**3
    database_url: str | None = field(default=None, repr=False)
    image_cache_bytes: int | None = None
    registry_mirrors: tuple[str, ...] = ()
    registry_credentials: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    node_id: str | None = None
    node_url: str | None = None
    sandboxes: bool = True
    node_lease_seconds: float = 10.0

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)

    def database(self, name: str) -> Location:
        """Where the database ``name`` (``registry``, ``meta`` or ``triggers``) lives."""
        return database_location(self.data_dir, self.database_url, name)


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` readable by the owner only (0600) and write ``data`` to it.

    Args:
        path: Destination; replaced if it exists.
        data: Contents.

    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remember_database_url(data_dir: Path, database_url: str | None) -> str | None:
    """Return the database URL to use with ``data_dir``, remembering a given one in the directory.

    A data directory served with ``--database-url`` keeps the URL (``database_url``, 0600), so later commands
    and starts on the directory without the option use the same database instead of its SQLite files. Delete
    the file to go back to SQLite.

    Args:
        data_dir: The data directory (existing).
        database_url: The URL given now, or None.

    """
    path = Path(data_dir) / DATABASE_URL_FILE
    if database_url:
        if not path.exists() or path.read_text(encoding="utf-8").strip() != database_url:
            write_private_file(path, database_url.encode("utf-8") + b"\n")
        return database_url
    if path.exists():
        return path.read_text(encoding="utf-8").strip() or None
    return None


def remember_blob_store(
    data_dir: Path, blob_store: str | None, s3_endpoint_url: str | None
) -> tuple[str | None, str | None]:
    """Return the blob store (and object-store URL) to use with ``data_dir``, remembering given ones there.

    A data directory served with ``--blob-store`` keeps it (file ``blob_store``, 0600, JSON, no credentials),
    so later starts without the option keep using the bucket instead of an empty ``blobs`` directory. Delete
    the file to go back to local blob files.

    Args:
        data_dir: The data directory (existing).
        blob_store: The ``s3://`` URL given now, or None.
        s3_endpoint_url: The object store's URL given now, or None.

    Returns:
        ``(blob_store, s3_endpoint_url)``.

    """
    path = Path(data_dir) / BLOB_STORE_FILE
    if blob_store:
        wanted = json.dumps({"blob_store": blob_store, "s3_endpoint_url": s3_endpoint_url}, sort_keys=True)
        if not path.exists() or path.read_text(encoding="utf-8").strip() != wanted:
            write_private_file(path, wanted.encode("utf-8") + b"\n")
        return blob_store, s3_endpoint_url
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8") or "{}")
        return saved.get("blob_store") or None, s3_endpoint_url or saved.get("s3_endpoint_url") or None
    return None, s3_endpoint_url


def generate_user_key() -> str:
    """Return a new user/admin API key (``tuk-`` prefix)."""
    return "tuk-" + secrets.token_urlsafe(32)


def load_or_create_admin_key(data_dir: Path) -> tuple[str, bool]:
    """Read the stored admin key, or generate and store one.

    Args:
        data_dir: The server's data directory.

    Returns:
        ``(key, created)`` where ``created`` tells whether the key was just generated (print it once).

    """
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key, False
    key = generate_user_key()
    write_private_file(path, key.encode() + b"\n")
    return key, True


def load_or_create_upload_secret(data_dir: Path) -> bytes:
    """Return the per-server HMAC secret that signs upload URLs (created on first use, 0600).

    Args:
        data_dir: The server's data directory.

    """
    path = data_dir / UPLOAD_SECRET_FILE
    if path.exists():
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    data = secrets.token_bytes(32)
    write_private_file(path, data)
    return data
