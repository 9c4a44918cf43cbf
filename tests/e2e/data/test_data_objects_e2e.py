"""Objects through sessions against a real server: every input shape, reads, listings, copies, deletes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tilde.core.errors import APIError, NotFoundError
from tilde.data import Client, ListingEntry, ObjectMetadata, ReadOnlyObjects, Repository


def _latest(repo: Repository) -> ReadOnlyObjects:
    return ReadOnlyObjects(repo._client, repo.org, repo.name)


def test_every_input_shape_round_trips(repo: Repository, tmp_path: Path) -> None:
    file_path = tmp_path / "on-disk.bin"
    file_path.write_bytes(b"from a path")
    inputs = {
        "bytes": b"plain bytes",
        "bytearray": bytearray(b"a bytearray"),
        "memoryview": memoryview(b"a memoryview"),
        "path": file_path,
        "file": io.BytesIO(b"a file object"),
        "iterable": iter([b"an ", b"iter", b"able"]),
        "empty": b"",
    }
    expected = {
        "bytes": b"plain bytes",
        "bytearray": b"a bytearray",
        "memoryview": b"a memoryview",
        "path": b"from a path",
        "file": b"a file object",
        "iterable": b"an iterable",
        "empty": b"",
    }
    with repo.session() as session:
        for name, data in inputs.items():
            result = session.objects.put(f"inputs/{name}", data)
            assert result.path == f"inputs/{name}"
            assert result.etag
        session.commit("inputs")
    latest = _latest(repo)
    for name, content in expected.items():
        with latest.get(f"inputs/{name}") as reader:
            assert reader.read() == content, name
            assert reader.content_length == len(content)


def test_read_your_writes_and_isolation(repo: Repository) -> None:
    with repo.session() as session:
        session.objects.put("note.txt", b"draft", content_type="text/plain")
        assert session.objects.get("note.txt").read() == b"draft"
        meta = session.objects.head("note.txt")
        assert meta.content_length == 5
        assert meta.content_type is not None
        assert meta.content_type.startswith("text/plain")
        assert [entry.path for entry in session.objects.list()] == ["note.txt"]
        # Outside the session nothing is visible yet.
        with pytest.raises(NotFoundError):
            _latest(repo).head("note.txt")
        assert list(_latest(repo).list()) == []
        assert session.commit("add note")
    assert _latest(repo).get("note.txt").read() == b"draft"


def test_rollback_leaves_nothing(repo: Repository) -> None:
    commits_before = [commit.id for commit in repo.commits.list()]
    with repo.session() as session:
        session.objects.put("temp/one", b"1")
        session.objects.put("temp/two", b"2")
        assert len(list(session.uncommitted())) == 2
        session.rollback()
    with pytest.raises(NotFoundError):
        _latest(repo).head("temp/one")
    assert list(_latest(repo).list(prefix="temp/")) == []
    assert [commit.id for commit in repo.commits.list()] == commits_before
    # Leaving the block without committing rolls back too.
    with repo.session() as session:
        session.objects.put("temp/three", b"3")
        abandoned = session.session_id
    assert list(_latest(repo).list(prefix="temp/")) == []
    with pytest.raises(APIError):
        repo.attach(abandoned).objects.put("temp/four", b"4")


def test_byte_ranges(seeded: Repository) -> None:
    latest = _latest(seeded)
    with latest.get("dir/sub/c.txt", byte_range=(0, 3)) as reader:
        assert reader.read() == b"char"
        assert reader.content_range == "bytes 0-3/7"
        assert reader.content_length == 4
    with latest.get("dir/sub/c.txt", byte_range=(4, None)) as reader:
        assert reader.read() == b"lie"
        assert reader.content_range == "bytes 4-6/7"
    with latest.get("dir/sub/c.txt", byte_range=(2, 100)) as reader:
        assert reader.read() == b"arlie"
    with pytest.raises(APIError) as caught, latest.get("dir/sub/c.txt", byte_range=(50, 60)) as reader:
        reader.read()
    assert caught.value.status_code == 416


def test_streaming_read_without_cache(seeded: Repository) -> None:
    reader = _latest(seeded).get("dir/b.txt", cache=False)
    assert b"".join(reader.iter_bytes(2)) == b"bravo"
    assert reader.etag is not None
    assert reader.etag.startswith('"')
    reader.close()


def test_listing_with_delimiter_prefix_and_paging(seeded: Repository) -> None:
    latest = _latest(seeded)
    top = list(latest.list(delimiter="/"))
    assert [(entry.path, entry.type) for entry in top] == [("a.txt", "object"), ("dir/", "prefix")]
    assert top[0].entry is not None
    assert top[0].entry.size == 5
    assert top[1] == ListingEntry(path="dir/", type="prefix")
    inner = list(latest.list(prefix="dir/", delimiter="/"))
    assert [(entry.path, entry.type) for entry in inner] == [("dir/b.txt", "object"), ("dir/sub/", "prefix")]
    paged = list(latest.list(page_size=1))
    assert [entry.path for entry in paged] == ["a.txt", "dir/b.txt", "dir/sub/c.txt"]
    assert [entry.path for entry in latest.list(after="a.txt", amount=1)] == ["dir/b.txt"]


def test_head_reports_metadata_and_missing_objects(seeded: Repository) -> None:
    meta = _latest(seeded).head("a.txt")
    assert isinstance(meta, ObjectMetadata)
    assert meta.content_length == 5
    assert meta.etag is not None
    with pytest.raises(NotFoundError):
        _latest(seeded).head("nope")
    with pytest.raises(NotFoundError), _latest(seeded).get("nope") as reader:
        reader.read()


def test_copy_delete_and_delete_many(seeded: Repository) -> None:
    with seeded.session() as session:
        copied = session.objects.copy("a.txt", "copies/a.txt")
        assert (copied.source_path, copied.destination_path) == ("a.txt", "copies/a.txt")
        session.objects.delete("dir/b.txt")
        assert session.objects.delete_many(["dir/sub/c.txt", "a.txt"]) == 2
        with pytest.raises(NotFoundError):
            session.objects.copy("missing", "x")
        changes = {record.path: record.entry for record in session.uncommitted()}
        assert set(changes) == {"copies/a.txt", "dir/b.txt", "dir/sub/c.txt", "a.txt"}
        assert changes["copies/a.txt"] is not None
        session.commit("reshuffle")
    latest = _latest(seeded)
    assert [entry.path for entry in latest.list()] == ["copies/a.txt"]
    assert latest.get("copies/a.txt").read() == b"alpha"


def test_uploads_with_identical_bytes_share_an_etag(repo: Repository) -> None:
    with repo.session() as session:
        first = session.objects.put("x/1", b"same bytes")
        second = session.objects.put("x/2", io.BytesIO(b"same bytes"))
        session.commit("dupes")
    assert first.etag == second.etag


def test_small_multipart_through_real_server(client: Client, repo_path: str) -> None:
    endpoint = client._config.endpoint_url
    api_key = client._config.api_key
    with Client(
        endpoint_url=endpoint,
        api_key=api_key,
        upload_threshold=0,
        multipart_part_size=1000,
        max_parts_in_flight=4,
    ) as small:
        repo = small.repository(repo_path)
        payload = bytes(range(256)) * 40  # 10240 bytes -> 11 parts
        with repo.session() as session:
            session.objects.put("parts.bin", payload)
            assert session.objects.get("parts.bin").read() == payload
            session.commit("multipart")
        assert small._multipart_unsupported is False
        assert _latest(repo).get("parts.bin", byte_range=(1000, 1999)).read() == payload[1000:2000]
