"""Volume tests against a real server: a 200 MiB parallel multipart upload, a 10 000-object listing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tilde.data import Client, ReadOnlyObjects, Repository

MIB = 1024 * 1024


def _block(offset: int, length: int) -> bytes:
    seed = hashlib.sha256(offset.to_bytes(8, "big")).digest()
    return (seed * (length // len(seed) + 1))[:length]


def _pattern(total: int, block: int = MIB) -> Iterator[bytes]:
    """Deterministic bytes that differ per block, generated without holding the whole object."""
    for offset in range(0, total, block):
        yield _block(offset, min(block, total - offset))


@pytest.mark.slow
def test_200_mib_parallel_multipart_upload_reads_back_identical(client: Client, repo_path: str) -> None:
    size = 200 * MIB
    expected = hashlib.sha256()
    for chunk in _pattern(size):
        expected.update(chunk)
    with Client(
        endpoint_url=client._config.endpoint_url,
        api_key=client._config.api_key,
        multipart_part_size=4 * MIB,  # 50 parts
        max_parts_in_flight=8,
    ) as uploader:
        repo = uploader.repository(repo_path)
        with repo.session() as session:
            result = session.objects.put("big/blob.bin", _pattern(size))
            assert result.etag
            session.commit("200 MiB")
        assert uploader._multipart_unsupported is False
        objects = ReadOnlyObjects(uploader, repo.org, repo.name)
        assert objects.head("big/blob.bin").content_length == size
        actual = hashlib.sha256()
        received = 0
        with objects.get("big/blob.bin", cache=False) as reader:
            for chunk in reader.iter_bytes(MIB):
                actual.update(chunk)
                received += len(chunk)
        assert received == size
        assert actual.hexdigest() == expected.hexdigest()
        tail = objects.get("big/blob.bin", byte_range=(size - 10, None)).read()
        assert tail == _block(size - MIB, MIB)[-10:]


@pytest.mark.slow
def test_listing_ten_thousand_objects_with_a_delimiter(repo: Repository) -> None:
    with repo.session() as session:
        session.objects.put("seed", b"x")
        paths = [f"dirs/{index % 100:03d}/file-{index:05d}" for index in range(10_000)]
        # Server-side copies move no bytes; a few in flight keep the wall time down.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda path: session.objects.copy("seed", path), paths))
        session.objects.delete("seed")
        session.commit("ten thousand")
    latest = ReadOnlyObjects(repo._client, repo.org, repo.name)
    prefixes = list(latest.list(prefix="dirs/", delimiter="/", page_size=1000))
    assert [entry.path for entry in prefixes] == [f"dirs/{index:03d}/" for index in range(100)]
    assert {entry.type for entry in prefixes} == {"prefix"}
    one_dir = list(latest.list(prefix="dirs/042/", delimiter="/"))
    assert len(one_dir) == 100
    assert all(entry.type == "object" for entry in one_dir)
    everything = list(latest.list(page_size=1000))
    assert len(everything) == 10_000
    assert [entry.path for entry in everything] == sorted(paths)
