"""One blob store per cluster: a replica whose blobs live elsewhere than the cluster's refuses to start.

Replicas sharing a PostgreSQL database share every object's metadata, so they must share the bytes too:
a replica keeping blobs in its own data directory, or in another bucket, would answer for objects whose
bytes it does not have. The first replica to start records the cluster's blob store, once the store opened,
in the shared settings (row ``blob_store`` of ``cluster_settings``, see `tilde.server.cluster.settings`);
every later start compares its own and refuses (`BlobStoreMismatch`, one line naming both) before it
serves or touches a blob.

A blob store's identity is:

- ``s3://BUCKET/PREFIX/ at ENDPOINT`` for a bucket (the prefix normalized as the store reads it, the endpoint
  lower-cased without a trailing ``/``; ``AWS S3`` when no endpoint URL is given);
- ``local:NODE_ID`` for blob files in a data directory: only that node has them, so a cluster whose blobs are
  local is a single node, which may restart as often as it likes (its data directory keeps its node id).

The one change accepted is a node moving its own recorded blob files to a bucket (``tilde-server
copy-blobs``): the bucket becomes the cluster's.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from tilde.server._db import PostgresDatabase
from tilde.server.cluster import CLUSTER_SCHEMA
from tilde.server.cluster.settings import ClusterSettingsError, SettingsStore

__all__ = ["BLOB_STORE", "BlobStoreMismatch", "blob_store_identity", "check_blob_store", "describe"]

#: The name of the shared setting that records the cluster's blob store.
BLOB_STORE = "blob_store"
_LOCAL = "local:"


class BlobStoreMismatch(ClusterSettingsError):
    """A replica's blob store is not the cluster's (its objects' bytes would be missing there)."""


def blob_store_identity(blob_store: str | None, endpoint_url: str | None, node_id: str) -> str:
    """Return the identity of a replica's blob store (what the cluster records and compares).

    Args:
        blob_store: ``s3://bucket[/prefix]``, or None for blob files in the data directory.
        endpoint_url: The object store's URL (None: AWS S3).
        node_id: This replica's node id (the owner of local blob files).

    """
    if not blob_store:
        return _LOCAL + node_id
    from tilde.server.storage.s3blobs import parse_blob_store_url

    location = parse_blob_store_url(blob_store)
    return f"s3://{location.bucket}/{location.prefix} at {_endpoint(endpoint_url)}"


def _endpoint(url: str | None) -> str:
    if not url:
        return "AWS S3"
    parts = urlsplit(url.strip())
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, parts.fragment)
    )


def describe(identity: str) -> str:
    """Return an identity as the refusal message names it."""
    if identity.startswith(_LOCAL):
        return f"the blob files of node {identity.removeprefix(_LOCAL)!r}"
    return identity


def check_blob_store(database_url: str, identity: str, node_id: str) -> None:
    """Record the cluster's blob store on its first start, or refuse a replica whose blob store differs.

    Args:
        database_url: The cluster's PostgreSQL URL.
        identity: This replica's `blob_store_identity`.
        node_id: This replica's node id.

    Raises:
        BlobStoreMismatch: The cluster's blobs are elsewhere (the message is one line naming both stores).
        tilde.server._db.DatabaseUnavailable: PostgreSQL cannot be reached.

    """
    store = SettingsStore(PostgresDatabase(database_url, CLUSTER_SCHEMA))
    try:
        recorded = store.get_or_create(BLOB_STORE, identity.encode).decode()
        if recorded == identity:
            return
        if recorded == _LOCAL + node_id and not identity.startswith(_LOCAL):
            # This node's own blob files were the cluster's; it moved them to a bucket (copy-blobs).
            if store.replace_if(BLOB_STORE, recorded.encode(), identity.encode()):
                return
            recorded = store.get_or_create(BLOB_STORE, identity.encode).decode()
            if recorded == identity:
                return
    finally:
        store.close()
    raise BlobStoreMismatch(
        f"this replica's blob store is {describe(identity)} but the cluster's is {describe(recorded)}: every"
        " replica of a cluster must use the same --blob-store and --s3-endpoint-url"
    )
