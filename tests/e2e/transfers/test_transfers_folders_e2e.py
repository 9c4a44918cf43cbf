"""Folder upload and download through the SDK against the real server: trees round-trip byte for byte."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from transfers_helpers import TREE, RecordingProgress, digest_tree, read_tree, write_tree

from tilde.core.errors import ConflictError
from tilde.data import FolderTransferResult, ReadOnlyObjects, Repository, TransferProgress


def _latest(repo: Repository) -> ReadOnlyObjects:
    return ReadOnlyObjects(repo._client, repo.org, repo.name)


def test_round_trip_is_byte_identical(repo: Repository, tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    write_tree(source, TREE)
    with repo.session() as session:
        uploaded = session.objects.upload_folder(source, "data/set")
        # A session reads its own staged objects, so it can download them before the commit.
        staged = session.objects.download("data/set/", tmp_path / "staged")
        session.commit("upload a tree")
    assert uploaded == FolderTransferResult(
        files=len(TREE), bytes=sum(map(len, TREE.values())), paths=sorted("data/set/" + p for p in TREE)
    )
    assert staged == uploaded
    assert sorted(e.path for e in _latest(repo).list()) == uploaded.paths
    downloaded = _latest(repo).download("data/set", target)
    assert downloaded == uploaded
    assert read_tree(target) == TREE
    assert read_tree(tmp_path / "staged") == TREE


def test_download_reads_the_commit_it_was_asked_for(repo: Repository, tmp_path: Path) -> None:
    write_tree(tmp_path / "v1", {"f.txt": b"one", "gone.txt": b"bye"})
    write_tree(tmp_path / "v2", {"f.txt": b"two"})
    with repo.session() as session:
        session.objects.upload_folder(tmp_path / "v1")
        first = session.commit("v1")
    with repo.session() as session:
        session.objects.upload_folder(tmp_path / "v2")
        session.objects.delete("gone.txt")
        session.commit("v2")
    assert first
    repo.commits.get(first).objects.download("", tmp_path / "old")
    _latest(repo).download("", tmp_path / "new")
    assert read_tree(tmp_path / "old") == {"f.txt": b"one", "gone.txt": b"bye"}
    assert read_tree(tmp_path / "new") == {"f.txt": b"two"}


def test_prefix_is_a_folder_not_a_string_prefix(repo: Repository, tmp_path: Path) -> None:
    with repo.session() as session:
        session.objects.put("data/a.txt", b"a")
        session.objects.put("database/b.txt", b"b")
        session.commit("two folders")
    result = _latest(repo).download("data", tmp_path / "out")
    assert result.paths == ["data/a.txt"]
    assert read_tree(tmp_path / "out") == {"a.txt": b"a"}


def test_include_and_exclude_filter_relative_paths(repo: Repository, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", TREE)
    with repo.session() as session:
        csv_only = session.objects.upload_folder(tmp_path / "src", "csv", include=["*.csv"])
        no_deep = session.objects.upload_folder(tmp_path / "src", "rest", exclude=["a/b/*", "*.bin"])
        both = session.objects.upload_folder(
            tmp_path / "src", "both", include=["a/*", "top.txt"], exclude=["*/empty"]
        )
        session.commit("filtered")
    assert csv_only.paths == ["csv/a/sibling.csv"]
    expected_rest = sorted("rest/" + p for p in TREE if not p.startswith("a/b/") and not p.endswith(".bin"))
    assert no_deep.paths == expected_rest
    assert both.paths == ["both/a/b/c/deep.txt", "both/a/sibling.csv", "both/top.txt"]


def test_progress_totals_equal_the_result(repo: Repository, tmp_path: Path) -> None:
    files = {f"small/{i:03d}.txt": os.urandom(i * 7) for i in range(120)}
    files["big.bin"] = os.urandom(3 * 1024 * 1024)  # above the batch limit: a per-file upload
    write_tree(tmp_path / "src", files)
    up = RecordingProgress()
    with repo.session() as session:
        result = session.objects.upload_folder(tmp_path / "src", progress=up, max_workers=4)
        session.commit("with progress")
    assert isinstance(up, TransferProgress)
    assert up.starts == [(result.files, result.bytes)]
    assert (up.files, up.bytes, up.finishes) == (result.files, result.bytes, 1)
    assert not up.overlapped
    assert threading.current_thread().name not in up.threads  # advance comes from the workers
    down = RecordingProgress()
    fetched = _latest(repo).download("", tmp_path / "out", progress=down, max_workers=4)
    assert fetched == result
    assert down.starts == [(result.files, result.bytes)]
    assert (down.files, down.bytes, down.finishes) == (result.files, result.bytes, 1)
    assert not down.overlapped
    assert read_tree(tmp_path / "out") == files


def test_progress_finishes_when_the_transfer_fails(repo: Repository, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {"a.txt": b"a"})
    progress = RecordingProgress()
    session = repo.session()
    session.rollback()
    with pytest.raises(ConflictError, match=r"rolled_back|closed"):
        session.objects.upload_folder(tmp_path / "src", progress=progress)
    assert progress.finishes == 1


def test_symlinks_are_not_followed_out_of_the_folder(repo: Repository, tmp_path: Path) -> None:
    source, outside = tmp_path / "src", tmp_path / "outside"
    write_tree(source, {"real.txt": b"real", "dir/inner.txt": b"inner"})
    write_tree(outside, {"secret.txt": b"secret"})
    (source / "inside-link.txt").symlink_to(source / "real.txt")
    (source / "outside-link.txt").symlink_to(outside / "secret.txt")
    (source / "outside-dir").symlink_to(outside, target_is_directory=True)
    (source / "dir-link").symlink_to(source / "dir", target_is_directory=True)
    (source / "dangling").symlink_to(tmp_path / "nothing-here")
    with repo.session() as session:
        result = session.objects.upload_folder(source)
        session.commit("links")
    assert result.paths == ["dir/inner.txt", "inside-link.txt", "real.txt"]
    assert _latest(repo).get("inside-link.txt").read() == b"real"


def test_download_refuses_paths_leading_out_of_the_folder(repo: Repository, tmp_path: Path) -> None:
    with repo.session() as session:
        session.objects.put("escape/payload.txt", b"payload")
        session.objects.put("fine.txt", b"fine")
        session.commit("a path through a link")
    target, outside = tmp_path / "target", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    (target / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside the folder"):
        _latest(repo).download("", target, max_workers=1)
    assert list(outside.iterdir()) == []


def test_upload_rejects_a_file_instead_of_a_folder(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with repo.session() as session, pytest.raises(NotADirectoryError):
        session.objects.upload_folder(tmp_path / "file")
    with repo.session() as session, pytest.raises(ValueError, match="max_workers"):
        session.objects.upload_folder(tmp_path, max_workers=0)


def test_download_replaces_existing_files_and_leaves_no_temporaries(repo: Repository, tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {"a.txt": b"new", "sub/b.txt": b"bee"})
    with repo.session() as session:
        session.objects.upload_folder(tmp_path / "src")
        session.commit("files")
    write_tree(tmp_path / "out", {"a.txt": b"old contents", "keep.txt": b"mine"})
    _latest(repo).download("", tmp_path / "out")
    assert read_tree(tmp_path / "out") == {"a.txt": b"new", "keep.txt": b"mine", "sub/b.txt": b"bee"}
    assert oct((tmp_path / "out" / "sub" / "b.txt").stat().st_mode & 0o777) != oct(0o600)


@pytest.mark.slow
def test_a_100_mb_file_among_small_ones_round_trips(repo: Repository, tmp_path: Path) -> None:
    source = tmp_path / "src"
    write_tree(source, {f"small/{i}.txt": f"file {i}\n".encode() for i in range(200)})
    with (source / "large.bin").open("wb") as handle:
        for block in range(100):
            handle.write(os.urandom(1024 * 1024) if block % 10 == 0 else bytes([block]) * (1024 * 1024))
    with repo.session() as session:
        result = session.objects.upload_folder(source, "mixed")
        session.commit("large and small")
    assert result.files == 201
    assert result.bytes == 100 * 1024 * 1024 + sum(len(f"file {i}\n") for i in range(200))
    _latest(repo).download("mixed", tmp_path / "out")
    assert digest_tree(tmp_path / "out") == digest_tree(source)
