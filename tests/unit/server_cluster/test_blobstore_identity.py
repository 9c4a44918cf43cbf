"""The identity a cluster records for its blob store, and the check of it against one PostgreSQL database."""

from __future__ import annotations

import re
import threading

import pytest
from pg_server import PostgresServer

from tilde.server.cluster.blobstore import BlobStoreMismatch, blob_store_identity, check_blob_store


def test_one_bucket_spelled_differently_has_one_identity() -> None:
    plain = blob_store_identity("s3://blobs/prod", "http://objects.internal:9000", "n1")
    assert plain == "s3://blobs/prod/ at http://objects.internal:9000"
    assert blob_store_identity("s3://blobs/prod/", "HTTP://Objects.Internal:9000/", "n2") == plain
    assert blob_store_identity("s3://blobs", None, "n1") == "s3://blobs/ at AWS S3"
    # Another prefix, bucket or endpoint is another store; blob files belong to their node.
    assert blob_store_identity("s3://blobs/test", "http://objects.internal:9000", "n1") != plain
    assert blob_store_identity("s3://other/prod", "http://objects.internal:9000", "n1") != plain
    assert blob_store_identity("s3://blobs/prod", None, "n1") != plain
    assert blob_store_identity(None, "http://objects.internal:9000", "n1") == "local:n1"


def test_replicas_starting_together_with_different_stores_agree_on_one(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.new_database()
    stores = [f"s3://bucket-{index}/ at AWS S3" for index in range(6)]
    refused: list[str] = []
    start = threading.Barrier(len(stores))

    def replica(identity: str) -> None:
        start.wait()
        try:
            check_blob_store(url, identity, "n-" + identity[5:13])
        except BlobStoreMismatch:
            refused.append(identity)

    threads = [threading.Thread(target=replica, args=(identity,)) for identity in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Exactly one store won; every other replica was refused, and the winner's store is the cluster's.
    assert len(refused) == len(stores) - 1
    (winner,) = set(stores) - set(refused)
    check_blob_store(url, winner, "late")
    with pytest.raises(BlobStoreMismatch, match=re.escape(winner)):
        check_blob_store(url, refused[0], "late")
