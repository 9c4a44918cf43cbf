"""The ``tilde://`` filesystem against a real server: listing, reading, writing, transactions, refs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec_helpers import commit_count

from tilde.data.fsspec import TildeFileSystem

PAYLOAD = bytes(range(256)) * 1000 + b"tail"


def test_the_entry_point_registers_the_protocol_without_an_import() -> None:
    code = "import fsspec; print(fsspec.get_filesystem_class('tilde').__name__)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "TildeFileSystem"


def test_importing_tilde_data_does_not_import_fsspec() -> None:
    code = "import sys, tilde.data; print('fsspec' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"


def test_write_then_read_is_byte_identical_with_one_commit_per_file(
    fs: TildeFileSystem, repo_path: str, storage_options: dict[str, Any]
) -> None:
    before = commit_count(fs, repo_path)
    with fs.open(f"tilde://{repo_path}/data/blob.bin", "wb", block_size=5 * 2**20) as f:
        f.write(PAYLOAD[:1000])
        f.write(PAYLOAD[1000:])
    fs.pipe_file(f"{repo_path}/data/small.txt", b"hello")
    assert commit_count(fs, repo_path) == before + 2
    with fs.open(f"tilde://{repo_path}/data/blob.bin", "rb") as f:
        assert f.read() == PAYLOAD
    assert fs.cat_file(f"tilde://{repo_path}/data/small.txt") == b"hello"
    with fsspec.open(f"tilde://{repo_path}/data/small.txt", "rt", **storage_options) as text:
        assert text.read() == "hello"


def test_listing_info_find_glob_exists(fs: TildeFileSystem, repo_path: str) -> None:
    with fs.transaction:
        for name in ("a.txt", "dir/b.txt", "dir/sub/c.csv"):
            fs.pipe_file(f"{repo_path}/{name}", name.encode())
    listing = fs.ls(f"tilde://{repo_path}")
    assert [(e["name"], e["type"]) for e in listing] == [
        (f"{repo_path}/a.txt", "file"),
        (f"{repo_path}/dir", "directory"),
    ]
    assert listing[0]["size"] == len(b"a.txt")
    assert fs.ls(f"{repo_path}/dir", detail=False) == [f"{repo_path}/dir/b.txt", f"{repo_path}/dir/sub"]
    assert fs.info(f"{repo_path}/dir/b.txt")["size"] == len(b"dir/b.txt")
    assert fs.info(f"{repo_path}/dir/sub")["type"] == "directory"
    assert fs.find(f"tilde://{repo_path}/dir") == [f"{repo_path}/dir/b.txt", f"{repo_path}/dir/sub/c.csv"]
    assert fs.find(repo_path, maxdepth=1, withdirs=True) == [f"{repo_path}/a.txt", f"{repo_path}/dir"]
    assert fs.glob(f"tilde://{repo_path}/**/*.csv") == [f"{repo_path}/dir/sub/c.csv"]
    assert fs.exists(f"{repo_path}/dir/sub")
    assert fs.isfile(f"{repo_path}/a.txt")
    assert fs.modified(f"{repo_path}/a.txt").tzinfo is not None
    assert not fs.exists(f"{repo_path}/nope.txt")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{repo_path}/nope.txt")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{repo_path}/nope.txt")


def test_ranged_reads(fs: TildeFileSystem, repo_path: str) -> None:
    path = f"{repo_path}/r.bin"
    fs.pipe_file(path, PAYLOAD)
    assert fs.cat_file(path, start=10, end=20) == PAYLOAD[10:20]
    assert fs.cat_file(path, start=-4) == b"tail"
    assert fs.cat_file(path, start=5, end=5) == b""
    assert fs.cat_file(path, start=len(PAYLOAD) - 2, end=len(PAYLOAD) + 100) == b"il"
    assert fs.cat_file(path, start=len(PAYLOAD)) == b""
    assert fs.cat_file(path, start=len(PAYLOAD) + 10, end=len(PAYLOAD) + 20) == b""
    assert fs.cat_ranges([path, path], [0, 100], [3, 110]) == [PAYLOAD[:3], PAYLOAD[100:110]]
    with fs.open(path, "rb", block_size=4096, cache_type="readahead") as f:
        f.seek(200_000)
        assert f.read(10) == PAYLOAD[200_000:200_010]
        f.seek(-4, os.SEEK_END)
        assert f.read() == b"tail"


def test_transaction_is_one_commit_and_an_error_rolls_back(fs: TildeFileSystem, repo_path: str) -> None:
    fs.pipe_file(f"{repo_path}/keep.txt", b"keep")
    before = commit_count(fs, repo_path)
    fs.commit_message = "three files at once"
    with fs.transaction:
        for index in range(3):
            with fs.open(f"{repo_path}/t/{index}.txt", "wb") as f:
                f.write(str(index).encode())
        # Reads inside the transaction see its own writes.
        assert fs.cat_file(f"{repo_path}/t/1.txt") == b"1"
        assert fs.find(f"{repo_path}/t") == [f"{repo_path}/t/{i}.txt" for i in range(3)]
    assert commit_count(fs, repo_path) == before + 1
    latest = next(iter(fs.client.repository(repo_path).commits.list()))
    assert latest.message == "three files at once"
    assert fs.cat_file(f"{repo_path}/t/2.txt") == b"2"

    def fail_midway() -> None:
        with fs.transaction:
            fs.pipe_file(f"{repo_path}/t/lost.txt", b"lost")
            fs.rm(f"{repo_path}/keep.txt")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_midway()
    assert commit_count(fs, repo_path) == before + 1
    assert not fs.exists(f"{repo_path}/t/lost.txt")
    assert fs.cat_file(f"{repo_path}/keep.txt") == b"keep"
    assert not fs._intrans


def test_rm_and_cp(fs: TildeFileSystem, repo_path: str) -> None:
    with fs.transaction:
        fs.pipe_file(f"{repo_path}/src.txt", b"source")
        fs.pipe_file(f"{repo_path}/old/a.txt", b"a")
        fs.pipe_file(f"{repo_path}/old/b/c.txt", b"c")
    fs.cp_file(f"{repo_path}/src.txt", f"{repo_path}/copy.txt")
    assert fs.cat_file(f"{repo_path}/copy.txt") == b"source"
    before = commit_count(fs, repo_path)
    fs.rm(f"tilde://{repo_path}/old", recursive=True)
    assert commit_count(fs, repo_path) == before + 1
    assert not fs.exists(f"{repo_path}/old")
    fs.pipe_file(f"{repo_path}/d/x.txt", b"x")
    with pytest.raises(IsADirectoryError):
        fs.rm(f"{repo_path}/d")
    with pytest.raises(FileNotFoundError):
        fs.rm(f"{repo_path}/missing.txt")
    fs.rm_file(f"{repo_path}/copy.txt")
    assert not fs.exists(f"{repo_path}/copy.txt")


def test_a_read_at_an_older_ref_returns_the_old_bytes(fs: TildeFileSystem, repo_path: str) -> None:
    path = f"{repo_path}/v.txt"
    fs.pipe_file(path, b"version one")
    first = next(iter(fs.client.repository(repo_path).commits.list())).id
    fs.pipe_file(path, b"version two!")
    old = f"tilde://{repo_path}@{first}/v.txt"
    assert fs.cat_file(old) == b"version one"
    assert fs.info(old)["size"] == len(b"version one")
    assert fs.ls(f"{repo_path}@{first}", detail=False) == [f"{repo_path}@{first}/v.txt"]
    with fs.open(old, "rb") as f:
        assert f.read() == b"version one"
    assert fs.cat_file(path) == b"version two!"
    with pytest.raises(ValueError, match="cannot write at a ref"):
        fs.pipe_file(old, b"no")


def test_put_and_get_round_trip_folders(fs: TildeFileSystem, repo_path: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    (source / "one.bin").write_bytes(PAYLOAD)
    (source / "nested" / "two.txt").write_bytes(b"two")
    before = commit_count(fs, repo_path)
    fs.put(str(source) + "/", f"tilde://{repo_path}/up/", recursive=True)
    assert commit_count(fs, repo_path) == before + 1
    assert fs.find(f"{repo_path}/up") == [f"{repo_path}/up/nested/two.txt", f"{repo_path}/up/one.bin"]
    target = tmp_path / "dst"
    fs.get(f"tilde://{repo_path}/up/", str(target) + "/", recursive=True)
    assert (target / "one.bin").read_bytes() == PAYLOAD
    assert (target / "nested" / "two.txt").read_bytes() == b"two"


def test_bad_input_gets_clear_errors(fs: TildeFileSystem, repo_path: str) -> None:
    with pytest.raises(ValueError, match="repository name is missing"):
        fs.ls("tilde://only-an-org")
    with pytest.raises(ValueError, match="expected an object path"):
        fs.pipe_file(repo_path, b"x")
    with pytest.raises(ValueError, match="'rb', 'wb' or 'xb'"):
        fs.open(f"{repo_path}/a.txt", "ab")
