"""`ObjectReader` as a binary file object, against a real server, through the standard library's consumers."""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import shutil
import tarfile
import tracemalloc
import zipfile
from collections.abc import Iterator
from typing import Literal

import pytest

from tilde.data import ObjectReader, ReadOnlyObjects, Repository
from tilde.data.object_reader import ObjectChangedError

MIB = 1024 * 1024


def _payload(size: int) -> bytes:
    """Deterministic bytes where every position differs from its neighbours (misplaced reads show)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def _store(repo: Repository, objects: dict[str, bytes]) -> ReadOnlyObjects:
    with repo.session() as session:
        for path, data in objects.items():
            session.objects.put(path, data)
        session.commit("reader fixtures")
    return repo.commits.list(amount=1).__next__().objects


@pytest.fixture
def blob(repo: Repository) -> tuple[ReadOnlyObjects, bytes]:
    data = _payload(100_000)
    return _store(repo, {"blob.bin": data}), data


def test_read_n_returns_at_most_n_bytes_and_ends(blob: tuple[ReadOnlyObjects, bytes]) -> None:
    objects, data = blob
    with objects.get("blob.bin") as reader:
        assert isinstance(reader, io.BufferedIOBase)
        assert (reader.readable(), reader.seekable(), reader.writable()) == (True, True, False)
        assert reader.read(10) == data[:10]
        assert reader.tell() == 10
        assert reader.read(0) == b""
        assert reader.read(90_000) == data[10:90_010]
        assert reader.read(50_000) == data[90_010:]
        assert reader.read(1) == b""
        assert reader.read1(5) == b""
        assert reader.tell() == len(data)
    assert reader.closed
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)


def test_copyfileobj_ends_with_the_exact_bytes(blob: tuple[ReadOnlyObjects, bytes]) -> None:
    objects, data = blob
    sink = io.BytesIO()
    with objects.get("blob.bin") as reader:
        shutil.copyfileobj(reader, sink, 4096)
    assert sink.getvalue() == data


def test_readinto_and_readall(blob: tuple[ReadOnlyObjects, bytes]) -> None:
    objects, data = blob
    with objects.get("blob.bin", cache=False) as reader:
        buffer = bytearray(1000)
        assert reader.readinto(buffer) == 1000
        assert bytes(buffer) == data[:1000]
        view = memoryview(bytearray(8))
        assert reader.readinto1(view) == 8
        assert bytes(view) == data[1000:1008]
        assert reader.readall() == data[1008:]
        assert reader.readall() == b""
        assert reader.read() == b""  # cache=False: a plain file at the end
        assert reader.readinto(buffer) == 0


def test_seek_and_tell_with_every_whence(blob: tuple[ReadOnlyObjects, bytes]) -> None:
    objects, data = blob
    with objects.get("blob.bin") as reader:
        assert reader.seek(50_000) == 50_000
        assert reader.read(4) == data[50_000:50_004]
        assert reader.seek(-8, io.SEEK_CUR) == 49_996
        assert reader.read(8) == data[49_996:50_004]
        assert reader.seek(-10, io.SEEK_END) == len(data) - 10
        assert reader.read() == data[-10:]
        assert reader.seek(3) == 3
        assert reader.read(3) == data[3:6]
        assert reader.seek(len(data) + 5) == len(data) + 5
        assert reader.read(10) == b""
        with pytest.raises(ValueError, match="negative"):
            reader.seek(-1)
        with pytest.raises(ValueError, match="whence"):
            reader.seek(0, 7)


def test_seek_before_the_first_read(blob: tuple[ReadOnlyObjects, bytes]) -> None:
    objects, data = blob
    end_first = objects.get("blob.bin")
    assert end_first.seek(-5, io.SEEK_END) == len(data) - 5  # the size comes from a HEAD
    assert end_first.read() == data[-5:]
    end_first.close()
    past_end = objects.get("blob.bin")
    past_end.seek(len(data) * 2)
    assert past_end.read(10) == b""  # the server's 416 for an unknown size is the end, not an error
    past_end.close()


def test_a_byte_range_is_a_file_of_its_own(blob: tuple[ReadOnlyObjects, bytes]) -> None:
    objects, data = blob
    with objects.get("blob.bin", byte_range=(1000, 1999)) as reader:
        assert reader.content_range == f"bytes 1000-1999/{len(data)}"
        assert reader.read(10) == data[1000:1010]
        assert reader.seek(0, io.SEEK_END) == 1000
        reader.seek(990)
        assert reader.read(100) == data[1990:2000]
        reader.seek(0)
        assert reader.read() == data[1000:2000]
    with objects.get("blob.bin", byte_range=(99_990, None)) as tail:
        assert tail.read() == data[99_990:]


def test_cache_keeps_the_published_whole_body_behaviour(blob: tuple[ReadOnlyObjects, bytes]) -> None:
    objects, data = blob
    reader = objects.get("blob.bin")
    assert reader.read() == data
    assert reader._cached_content == data
    assert reader.read() == data  # 0.7: a size-less read() of a cached body returns it again
    assert reader.read(5) == b""  # sized reads are plain file reads
    reader.seek(10)
    assert reader.read(5) == data[10:15]
    assert b"".join(reader.iter_bytes(1000)) == data[15:]
    reader.close()


def test_line_iteration_text_and_csv(repo: Repository) -> None:
    rows = [["id", "name", "note"]] + [[str(i), f"name-{i}", 'a, quoted "note"'] for i in range(3000)]
    text = io.StringIO(newline="")
    csv.writer(text).writerows(rows)
    objects = _store(repo, {"table.csv": text.getvalue().encode()})
    with objects.get("table.csv") as reader:
        lines = list(reader)
    assert len(lines) == len(rows)
    assert b"".join(lines) == text.getvalue().encode()
    with (
        objects.get("table.csv") as reader,
        io.TextIOWrapper(reader, encoding="utf-8", newline="") as wrapper,
    ):
        assert list(csv.reader(wrapper)) == rows
    with objects.get("table.csv") as reader:
        buffered = io.BufferedReader(reader, buffer_size=1024)
        assert buffered.readline() == b"id,name,note\r\n"
        assert buffered.read() == text.getvalue().encode()[len(b"id,name,note\r\n") :]
    with objects.get("table.csv") as reader:
        assert reader.readline(5) == b"id,na"
        assert reader.readline() == b"me,note\r\n"


def test_zipfile_reads_members_with_seeks(repo: Repository) -> None:
    members = {f"dir/file-{i}.bin": _payload(20_000 + i * 7_000) for i in range(12)}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as writer:
        for name, data in members.items():
            writer.writestr(name, data)
    objects = _store(repo, {"archive.zip": archive.getvalue()})
    with objects.get("archive.zip", cache=False) as reader, zipfile.ZipFile(reader) as zipped:
        assert zipped.namelist() == list(members)
        for name in reversed(list(members)):  # back to front: every member is a seek
            assert zipped.read(name) == members[name]
        assert zipped.testzip() is None


def _tar(members: dict[str, bytes], mode: Literal["w", "w:gz"]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_tarfile_streaming_and_random_access(repo: Repository) -> None:
    members = {f"m/{i:02}.bin": _payload(3_000 + i * 50_000) for i in range(8)}
    objects = _store(repo, {"a.tar.gz": _tar(members, "w:gz"), "a.tar": _tar(members, "w")})
    with objects.get("a.tar.gz", cache=False) as reader, tarfile.open(fileobj=reader, mode="r|*") as stream:
        seen = {}
        for info in stream:
            extracted = stream.extractfile(info)
            assert extracted is not None
            seen[info.name] = extracted.read()
    assert seen == members
    with objects.get("a.tar", cache=False) as reader, tarfile.open(fileobj=reader, mode="r:") as archive:
        assert archive.getnames() == list(members)
        for name in ("m/07.bin", "m/00.bin", "m/04.bin"):
            extracted = archive.extractfile(name)
            assert extracted is not None
            assert extracted.read() == members[name]


def test_a_changed_object_is_not_mixed_into_one_read(repo: Repository) -> None:
    first, second = _payload(2 * MIB), _payload(2 * MIB + 1)[::-1][: 2 * MIB]
    with repo.session() as session:
        session.objects.put("moving.bin", first)
        reader = session.objects.get("moving.bin", cache=False)
        assert reader.read(10) == first[:10]
        session.objects.put("moving.bin", second)
        reader.seek(MIB)  # beyond the open stream: a new request meets the new version
        with pytest.raises(ObjectChangedError, match="changed while it was being read"):
            reader.read(10)
        reader.close()
        fresh = session.objects.get("moving.bin")
        fresh.seek(MIB)
        assert fresh.read(10) == second[MIB : MIB + 10]
        fresh.close()


def _pattern(total: int) -> Iterator[bytes]:
    for offset in range(0, total, MIB):
        yield hashlib.sha256(offset.to_bytes(8, "big")).digest() * (MIB // 32)


def test_reading_64_mib_in_1_mib_reads_keeps_memory_bounded(repo: Repository) -> None:
    size = 64 * MIB
    expected = hashlib.sha256()
    for chunk in _pattern(size):
        expected.update(chunk)
    with repo.session() as session:
        session.objects.put("big.bin", _pattern(size))
        session.commit("big")
    reader: ObjectReader = repo.commits.list(amount=1).__next__().objects.get("big.bin")  # cache=True default
    got = hashlib.sha256()
    total = 0
    gc.collect()
    tracemalloc.start()
    try:
        while chunk := reader.read(MIB):
            got.update(chunk)
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        reader.close()
    assert (total, got.hexdigest()) == (size, expected.hexdigest())
    assert peak < 16 * MIB, f"peak {peak} bytes while reading a {size}-byte object"  # a quarter of it
