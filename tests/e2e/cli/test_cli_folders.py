"""``tilde cp -r``: folders up and down in one session and one commit, byte-identical round trips."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cli_helpers import Cli, tree

from tilde.cli._progress import BarProgress

if TYPE_CHECKING:
    from tilde import Repository


def _make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "top.txt": b"top level\n",
        "empty.bin": b"",
        "nested/deeper/deepest/leaf.json": b'{"a": 1}',
        "nested/ünïcødé 名前.txt": "ünïcødé\n".encode(),
        "nested/space name/x y.csv": b"1,2\n",
        "big/blob.bin": os.urandom(20 * 1024 * 1024),
    }
    for n in range(30):
        files[f"many/f{n:03d}.dat"] = os.urandom(n * 37)
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_folder_round_trip_is_byte_identical_in_one_commit(
    cli: Cli, repo: Repository, repo_path: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    files = _make_tree(source)

    up = cli.ok("cp", "-r", str(source), f"tilde://{repo_path}/data", "-m", "add the tree")

    assert f"Uploaded {len(files)} files" in up.stderr
    commits = list(repo.commits.list())
    assert [c.message for c in commits] == ["add the tree"]  # one session, one commit
    listed = [
        r["path"] for r in json.loads(cli.ok("ls", "-r", f"tilde://{repo_path}/data/", "--json").stdout)
    ]
    assert listed == sorted("data/" + p for p in files)

    down = tmp_path / "down"
    result = cli.ok("cp", "-r", f"tilde://{repo_path}/data", str(down))
    assert f"Downloaded {len(files)} files" in result.stderr
    assert tree(down) == files

    # The same tree at the commit, through @REF, and with the trailing slash.
    again = tmp_path / "again"
    cli.ok("cp", "-r", f"tilde://{repo_path}@{commits[0].id}/data/", str(again))
    assert tree(again) == files


def test_folder_upload_to_the_repository_root_and_download_of_everything(
    cli: Cli, repo: Repository, repo_path: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "a" / "x.txt").write_bytes(b"x")
    (source / "y.txt").write_bytes(b"y")

    cli.ok("cp", "-r", str(source), f"tilde://{repo_path}")
    down = tmp_path / "down"
    cli.ok("cp", "-r", f"tilde://{repo_path}/", str(down))
    assert tree(down) == {"a/x.txt": b"x", "y.txt": b"y"}


def test_folder_bad_input(cli: Cli, repo: Repository, repo_path: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no files; nothing was copied" in cli.fails(
        "cp", "-r", str(empty), f"tilde://{repo_path}/x/"
    )
    assert "nothing under" in cli.fails("cp", "-r", f"tilde://{repo_path}/none/", str(tmp_path / "d"))
    assert "No such file or directory" in cli.fails(
        "cp", "-r", str(tmp_path / "missing"), f"tilde://{repo_path}/"
    )
    assert list(repo.commits.list()) == []


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_a_terminal_only_without_quiet(
    cli: Cli, repo: Repository, repo_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet: bool
) -> None:
    source = tmp_path / "src"
    for n in range(5):
        (source / f"d{n}").mkdir(parents=True)
        (source / f"d{n}" / "f.bin").write_bytes(b"z" * 1000)
    # click's runner captures stderr in a buffer; make the CLI believe it is a terminal.
    monkeypatch.setattr("tilde.cli._progress.stderr_is_terminal", lambda: True)

    up = cli.ok("cp", "-r", str(source), f"tilde://{repo_path}/p", *(["--quiet"] if quiet else []))
    down = cli.ok(
        "cp", "-r", f"tilde://{repo_path}/p", str(tmp_path / "down"), *(["--quiet"] if quiet else [])
    )

    for result, label in ((up, "upload"), (down, "download")):
        if quiet:
            assert len(result.stderr.splitlines()) == 1, result.stderr  # the summary only
        else:
            assert label in result.stderr
            assert "5/5 files" in result.stderr
            assert "100%" in result.stderr


def test_progress_bar_for_single_files(
    cli: Cli, repo: Repository, repo_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tilde.cli._progress.stderr_is_terminal", lambda: True)
    data = os.urandom(3 * 1024 * 1024)
    (tmp_path / "one.bin").write_bytes(data)

    up = cli.ok("cp", str(tmp_path / "one.bin"), f"tilde://{repo_path}/one.bin")
    down = cli.ok("cp", f"tilde://{repo_path}/one.bin", str(tmp_path / "back.bin"))

    assert (tmp_path / "back.bin").read_bytes() == data
    for result in (up, down):
        assert "1/1 files" in result.stderr
        assert "3.00M/3.00M" in result.stderr


def test_progress_bar_draws_bytes_files_rate() -> None:
    lines: list[str] = []

    class Terminal:
        def write(self, text: str) -> int:
            lines.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    bar = BarProgress("upload", stream=Terminal())  # type: ignore[arg-type]
    bar.start(total_files=2, total_bytes=4096)
    bar.advance(files=1, bytes=2048)
    bar.advance(files=1, bytes=2048)
    bar.finish()
    bar.finish()  # idempotent
    drawn = "".join(lines)
    assert "2/2 files" in drawn
    assert "4.00k/4.00k" in drawn
    assert "B/s" in drawn
