"""``download_file``: one object into one file, in parallel ranged GETs, resumable (real server)."""

from __future__ import annotations

import fcntl
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tilde.core.errors import NotFoundError
from tilde.data import Client, ReadOnlyObjects, Repository
from tilde.data._download_file import download_file
from tilde.server import LocalServer

MIB = 1024 * 1024


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty folder to download into."""
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def ranges_seen() -> list[str]:
    return []


@pytest.fixture
def watched(server: LocalServer, repo_path: str, ranges_seen: list[str]) -> Iterator[Repository]:
    """The test's repository, through a client that records the Range header of every object GET."""

    def record(request: httpx.Request) -> None:
        if request.method == "GET" and request.url.path.endswith("/object"):
            ranges_seen.append(request.headers.get("range", ""))

    http = httpx.Client(base_url=server.endpoint_url + "/api/v1", event_hooks={"request": [record]})
    with http, Client(endpoint_url=server.endpoint_url, api_key=server.api_key, http_client=http) as client:
        yield client.repository(repo_path)


def store(repo: Repository, objects: dict[str, bytes]) -> ReadOnlyObjects:
    with repo.session() as session:
        for path, data in objects.items():
            session.objects.put(path, data)
        session.commit("to download")
    return ReadOnlyObjects(repo._client, repo.org, repo.name)


@pytest.mark.parametrize("size", [0, 1, MIB - 1, MIB, 3 * MIB + 5])
def test_sizes_on_and_off_range_boundaries(watched: Repository, folder: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    objects = store(watched, {"blob.bin": data})
    target = folder / "out.bin"
    assert download_file(objects, "blob.bin", target, max_workers=3, range_size=MIB) == size
    assert target.read_bytes() == data
    assert sorted(p.name for p in folder.iterdir()) == ["out.bin"]


def test_ranges_are_fetched_in_parallel_pieces(
    watched: Repository, folder: Path, ranges_seen: list[str]
) -> None:
    data = random.Random(1).randbytes(3 * MIB + 5)
    objects = store(watched, {"blob.bin": data})
    ranges_seen.clear()
    download_file(objects, "blob.bin", folder / "out.bin", max_workers=2, range_size=MIB)
    assert sorted(ranges_seen) == sorted(
        [
            f"bytes=0-{MIB - 1}",
            f"bytes={MIB}-{2 * MIB - 1}",
            f"bytes={2 * MIB}-{3 * MIB - 1}",
            f"bytes={3 * MIB}-{3 * MIB + 4}",
        ]
    )


def test_public_call_on_a_session_and_a_commit_into_a_directory(watched: Repository, folder: Path) -> None:
    data = random.Random(2).randbytes(5 * MIB + 1)
    with watched.session() as session:
        session.objects.put("dir/staged.bin", data)
        # Read-your-writes: the session's own staged object.
        assert session.objects.download_file("dir/staged.bin", folder) == len(data)
        assert (folder / "staged.bin").read_bytes() == data
        commit_id = session.commit("one")
    existing = folder / "copy.bin"
    existing.write_bytes(b"old contents")
    assert watched.commits.get(commit_id).objects.download_file("dir/staged.bin", existing, max_workers=1)
    assert existing.read_bytes() == data


def test_a_missing_object_leaves_nothing_behind(watched: Repository, folder: Path) -> None:
    objects = store(watched, {"other.bin": b"x"})
    with pytest.raises(NotFoundError):
        objects.download_file("missing.bin", folder / "out.bin")
    assert list(folder.iterdir()) == []
    with pytest.raises(ValueError, match="max_workers"):
        objects.download_file("other.bin", folder / "out.bin", max_workers=0)


def test_a_partial_download_is_resumed_fetching_only_the_missing_ranges(
    watched: Repository, folder: Path, ranges_seen: list[str]
) -> None:
    data = random.Random(3).randbytes(4 * MIB)
    objects = store(watched, {"blob.bin": data})
    etag = objects.head("blob.bin").etag
    target = folder / "out.bin"
    # What an interrupted call leaves: its temporary file (ranges 0 and 2 written, not the rest), its state.
    partial = bytearray(4 * MIB)
    partial[0:MIB] = data[0:MIB]
    partial[2 * MIB : 3 * MIB] = data[2 * MIB : 3 * MIB]
    (folder / "out.bin.tilde-download").write_bytes(bytes(partial))
    state = {"etag": etag, "size": 4 * MIB, "range_size": MIB, "done": [0, 2]}
    (folder / "out.bin.tilde-download.json").write_text(json.dumps(state))
    ranges_seen.clear()
    assert download_file(objects, "blob.bin", target, max_workers=2) == 4 * MIB
    assert target.read_bytes() == data
    # Only ranges 1 and 3, in the range size the first call chose.
    assert sorted(ranges_seen) == [f"bytes={MIB}-{2 * MIB - 1}", f"bytes={3 * MIB}-{4 * MIB - 1}"]
    assert sorted(p.name for p in folder.iterdir()) == ["out.bin"]


def test_a_partial_download_of_another_version_starts_over(
    watched: Repository, folder: Path, ranges_seen: list[str]
) -> None:
    data = random.Random(4).randbytes(2 * MIB)
    objects = store(watched, {"blob.bin": data})
    (folder / "out.bin.tilde-download").write_bytes(bytes(2 * MIB))
    state = {"etag": '"not-this-version"', "size": 2 * MIB, "range_size": MIB, "done": [0, 1]}
    (folder / "out.bin.tilde-download.json").write_text(json.dumps(state))
    ranges_seen.clear()
    download_file(objects, "blob.bin", folder / "out.bin", max_workers=2, range_size=MIB)
    assert (folder / "out.bin").read_bytes() == data
    assert len(ranges_seen) == 2


@pytest.mark.parametrize("range_size", [MIB, 3 * MIB // 2 + 3])
def test_bytes_are_written_around_the_page_cache(
    watched: Repository, folder: Path, monkeypatch: pytest.MonkeyPatch, range_size: int
) -> None:
    # Aligned ranges and ranges that start inside a page: every whole page goes around the page cache
    # (O_DIRECT), only the bytes before a range's first page boundary and the file's last partial page do not.
    data = random.Random(range_size).randbytes(5 * MIB + 7)
    objects = store(watched, {"blob.bin": data})
    direct: list[tuple[int, int]] = []
    real = os.pwrite

    def pwrite(fd: int, buffer: memoryview | bytes, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            assert offset % 4096 == 0
            assert len(buffer) % 4096 == 0
            direct.append((offset, len(buffer)))
        return real(fd, buffer, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    target = folder / "out.bin"
    assert download_file(objects, "blob.bin", target, max_workers=3, range_size=range_size) == len(data)
    assert target.read_bytes() == data
    ranges = -(-len(data) // range_size)
    assert sum(length for _, length in direct) >= len(data) - ranges * 4096
