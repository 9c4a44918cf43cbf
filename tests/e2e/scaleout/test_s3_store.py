"""``S3BlobStore`` itself on a real S3 server (SeaweedFS): content addressing, reuse, garbage collection."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from weed_s3 import S3Server

from tilde.server.storage.errors import InvalidArgument, NotFound
from tilde.server.storage.s3blobs import S3BlobStore, open_s3_blob_store, parse_blob_store_url
from tilde.server.storage.types import BlobRef


@pytest.fixture
def store(tmp_path: Path, s3_server: S3Server) -> Iterator[S3BlobStore]:
    opened = open_s3_blob_store(
        f"s3://{s3_server.new_bucket({})}/some/prefix",
        cache_dir=tmp_path / "cache",
        cache_bytes=1 << 30,
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        credentials=(s3_server.access_key_id, s3_server.secret_access_key),
    )
    yield opened
    opened.close()


def _keys(store: S3BlobStore, prefix: str = "") -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.location.prefix + prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def _write(store: S3BlobStore, data: bytes) -> BlobRef:
    with store.open_writer() as writer:
        writer.write(data)
        return writer.commit()


def test_blob_store_urls_are_checked() -> None:
    assert parse_blob_store_url("s3://bucket").prefix == ""
    assert parse_blob_store_url("s3://bucket/a/b/").prefix == "a/b/"
    for bad in ("bucket/prefix", "s3:///prefix", "file:///tmp", "s3://bucket/p?x=1"):
        with pytest.raises(InvalidArgument):
            parse_blob_store_url(bad)


def test_a_missing_bucket_or_wrong_secret_is_refused(tmp_path: Path, s3_server: S3Server) -> None:
    with pytest.raises(InvalidArgument, match="no-such-bucket"):
        open_s3_blob_store(
            "s3://no-such-bucket",
            cache_dir=tmp_path / "c1",
            cache_bytes=1 << 20,
            endpoint_url=s3_server.endpoint_url,
            credentials=(s3_server.access_key_id, s3_server.secret_access_key),
        )
    bucket = s3_server.new_bucket({})
    with pytest.raises(InvalidArgument, match=bucket):
        open_s3_blob_store(
            f"s3://{bucket}",
            cache_dir=tmp_path / "c2",
            cache_bytes=1 << 20,
            endpoint_url=s3_server.endpoint_url,
            credentials=(s3_server.access_key_id, "wrong-secret"),
        )


def test_blobs_are_content_addressed_under_the_prefix(store: S3BlobStore, tmp_path: Path) -> None:
    data = b"content-addressed bytes"
    digest = hashlib.sha256(data).hexdigest()
    ref = _write(store, data)
    assert ref == BlobRef(key=digest, size=len(data), sha256=digest)
    assert _keys(store) == [f"some/prefix/blobs/{digest[:2]}/{digest[2:4]}/{digest}"]
    assert store.exists(ref)
    # Written bytes stay in the node cache; a second node (another cache) fetches and verifies them.
    second = S3BlobStore(store.location, type(store.cache)(tmp_path / "other-cache"), client=store.client)
    assert second.path(ref).read_bytes() == data
    with pytest.raises(NotFound):
        second.path(BlobRef(key="0" * 64, size=1, sha256="0" * 64))
    source = tmp_path / "file.bin"
    source.write_bytes(b"ingested")
    inode = source.stat().st_ino
    ingested = store.ingest_file(source)
    assert not source.exists()
    assert store.path(ingested).read_bytes() == b"ingested"
    assert store.path(ingested).stat().st_ino == inode  # renamed into the cache, not copied
    assert store.exists(ingested)
    # A file with another link is copied: whoever holds that link cannot change the cached blob.
    shared = tmp_path / "shared.bin"
    shared.write_bytes(b"shared bytes")
    os.link(shared, tmp_path / "other-link")
    copied = store.ingest_file(shared)
    assert store.path(copied).stat().st_ino != (tmp_path / "other-link").stat().st_ino
    joined = store.concat([ref, ingested])
    assert second.path(joined).read_bytes() == data + b"ingested"
    second.close()


def test_garbage_collection_keeps_referenced_and_recently_reused_blobs(store: S3BlobStore) -> None:
    old, reused, referenced = (_write(store, bytes([n]) * 10) for n in range(3))
    time.sleep(1.1)  # LastModified has one-second resolution
    cutoff = time.time()
    time.sleep(1.1)
    assert _write(store, bytes([1]) * 10) == reused  # storing the same bytes again refreshes the object
    candidates = {b.key for b in store.unreferenced({referenced.key}, cutoff)}
    assert candidates == {old.key}
    assert not store.delete(reused, cutoff)
    assert store.delete(old, cutoff)
    assert not store.exists(old)
    assert store.exists(reused)
    assert store.exists(referenced)


def test_staged_uploads_are_swept_unless_live(store: S3BlobStore) -> None:
    for upload_id in ("live", "dead"):
        assert httpx.put(store.presign_upload(upload_id, 60), content=b"x").status_code == 200
    store.start_multipart("dead-multipart")
    store.start_multipart("live-multipart")
    assert store.sweep_uploads({"live", "live-multipart"}, time.time() - 3600) == 0
    time.sleep(1.1)
    assert store.sweep_uploads({"live", "live-multipart"}, time.time()) == 2
    assert _keys(store, "uploads/") == ["some/prefix/uploads/live"]
    assert store.has_multipart("live-multipart")
    assert not store.has_multipart("dead-multipart")
