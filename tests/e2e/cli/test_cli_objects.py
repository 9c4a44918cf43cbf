"""``tilde ls``, ``cat``, ``rm`` and single-file ``cp`` against a real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cli_helpers import Cli

if TYPE_CHECKING:
    from tilde import Repository
    from tilde.server import LocalServer


def _head(repo: Repository) -> str:
    return next(iter(repo.commits.list(amount=1))).id


def _read(repo: Repository, path: str) -> bytes:
    return next(iter(repo.commits.list(amount=1))).objects.get(path).read()


def test_ls_one_level_shows_prefixes(cli: Cli, seeded: Repository, repo_path: str) -> None:
    out = cli.ok("ls", f"tilde://{repo_path}").stdout.splitlines()
    assert len(out) == 2
    assert out[0].endswith(" 5 a.txt")
    assert out[1].split() == ["PRE", "dir/"]
    # Naming a folder with or without the trailing slash lists its contents.
    for url in (f"tilde://{repo_path}/dir", f"tilde://{repo_path}/dir/"):
        lines = cli.ok("ls", url).stdout.splitlines()
        assert lines[0].endswith(" 5 b.txt")
        assert lines[1].split() == ["PRE", "sub/"]
    # Naming an object lists just that object.
    assert cli.ok("ls", f"tilde://{repo_path}/dir/b.txt").stdout.rstrip().endswith(" b.txt")


def test_ls_recursive_and_json(cli: Cli, seeded: Repository, repo_path: str) -> None:
    rows = json.loads(cli.ok("ls", "-r", f"tilde://{repo_path}", "--json").stdout)
    assert [row["path"] for row in rows] == ["a.txt", "dir/b.txt", "dir/sub/c.txt"]
    assert rows[0]["type"] == "object"
    assert rows[0]["size"] == 5
    assert {"last_modified", "e_tag", "content_type"} <= set(rows[0])
    one_level = json.loads(cli.ok("ls", f"tilde://{repo_path}/", "--json").stdout)
    assert one_level == [rows[0], {"path": "dir/", "type": "prefix"}]
    text = cli.ok("ls", "-r", f"tilde://{repo_path}/dir").stdout
    assert [line.split()[-1] for line in text.splitlines()] == ["dir/b.txt", "dir/sub/c.txt"]


def test_ls_and_cat_at_a_past_commit(cli: Cli, seeded: Repository, repo_path: str) -> None:
    first = _head(seeded)
    with seeded.session() as session:
        session.objects.put("a.txt", b"changed")
        session.objects.put("new.txt", b"n")
        session.commit("second")

    assert cli.ok("cat", f"tilde://{repo_path}/a.txt").stdout_bytes == b"changed"
    assert cli.ok("cat", f"tilde://{repo_path}@{first}/a.txt").stdout_bytes == b"alpha"
    paths = [r["path"] for r in json.loads(cli.ok("ls", f"tilde://{repo_path}@{first}", "--json").stdout)]
    assert paths == ["a.txt", "dir/"]


def test_cat_streams_binary_bytes(cli: Cli, repo: Repository, repo_path: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    with repo.session() as session:
        session.objects.put("blob.bin", data)
        session.commit("blob")
    assert cli.ok("cat", f"tilde://{repo_path}/blob.bin").stdout_bytes == data


def test_ls_cat_bad_paths(cli: Cli, seeded: Repository, repo_path: str) -> None:
    org = repo_path.split("/")[0]
    assert "no such object or prefix" in cli.fails("ls", f"tilde://{repo_path}/nothing")
    assert "repository 'missing' not found" in cli.fails("ls", f"tilde://{org}/missing")
    assert "not found (404)" in cli.fails("cat", f"tilde://{repo_path}/nothing.txt")
    assert "names a prefix" in cli.fails("cat", f"tilde://{repo_path}/dir/")
    usage = cli("ls", "s3://bucket/key")
    assert usage.exit_code == 2
    assert "is not a tilde:// URL" in usage.stderr


def test_rm_objects_in_one_commit(cli: Cli, seeded: Repository, repo_path: str) -> None:
    before = _head(seeded)
    result = cli.ok("rm", f"tilde://{repo_path}/a.txt", f"tilde://{repo_path}/dir/b.txt", "-m", "tidy")
    assert "Deleted 2 objects in commit" in result.stderr
    commits = list(seeded.commits.list(amount=2))
    assert commits[0].message == "tidy"
    assert commits[1].id == before
    paths = [r["path"] for r in json.loads(cli.ok("ls", "-r", f"tilde://{repo_path}", "--json").stdout)]
    assert paths == ["dir/sub/c.txt"]


def test_rm_recursive(cli: Cli, seeded: Repository, repo_path: str) -> None:
    assert "names a prefix; use -r" in cli.fails("rm", f"tilde://{repo_path}/dir/")
    assert "Deleted 2 objects" in cli.ok("rm", "-r", f"tilde://{repo_path}/dir").stderr
    paths = [r["path"] for r in json.loads(cli.ok("ls", "-r", f"tilde://{repo_path}", "--json").stdout)]
    assert paths == ["a.txt"]


def test_rm_bad_input_changes_nothing(cli: Cli, seeded: Repository, repo_path: str) -> None:
    before = _head(seeded)
    assert cli.fails("rm", f"tilde://{repo_path}/a.txt", f"tilde://{repo_path}/nope") == (
        f"Error: no such object: tilde://{repo_path}/nope"
    )
    assert "nothing to delete" in cli.fails("rm", "-r", f"tilde://{repo_path}/nope/")
    assert "drop the @REF" in cli.fails("rm", f"tilde://{repo_path}@{before}/a.txt")
    assert _head(seeded) == before


def test_cp_single_files_both_ways(cli: Cli, repo: Repository, repo_path: str, tmp_path: Path) -> None:
    local = tmp_path / "report ü.csv"
    local.write_bytes(b"a,b\n1,2\n")

    up = cli.ok("cp", str(local), f"tilde://{repo_path}/reports/", "-m", "add report")
    assert f"Uploaded report ü.csv (8 B) to tilde://{repo_path}/reports/report ü.csv in commit" in up.stderr
    assert next(iter(repo.commits.list(amount=1))).message == "add report"
    cli.ok("cp", str(local), f"tilde://{repo_path}/renamed.csv")
    assert _read(repo, "renamed.csv") == b"a,b\n1,2\n"

    into_dir = tmp_path / "down"
    into_dir.mkdir()
    cli.ok("cp", f"tilde://{repo_path}/reports/report ü.csv", str(into_dir))
    assert (into_dir / "report ü.csv").read_bytes() == b"a,b\n1,2\n"
    cli.ok("cp", f"tilde://{repo_path}/renamed.csv", str(tmp_path / "new" / "copy.csv"))
    assert (tmp_path / "new" / "copy.csv").read_bytes() == b"a,b\n1,2\n"
    assert sorted(p.name for p in into_dir.iterdir()) == ["report ü.csv"]  # no temporary file left


def test_cp_within_a_repository(cli: Cli, seeded: Repository, repo_path: str) -> None:
    cli.ok("cp", f"tilde://{repo_path}/a.txt", f"tilde://{repo_path}/archive/")
    cli.ok("cp", "-r", f"tilde://{repo_path}/dir", f"tilde://{repo_path}/copy", "-m", "copy dir")
    head = next(iter(seeded.commits.list(amount=1)))
    assert head.message == "copy dir"
    paths = [r["path"] for r in json.loads(cli.ok("ls", "-r", f"tilde://{repo_path}", "--json").stdout)]
    assert paths == ["a.txt", "archive/a.txt", "copy/b.txt", "copy/sub/c.txt", "dir/b.txt", "dir/sub/c.txt"]
    assert head.objects.get("copy/sub/c.txt").read() == b"charlie"


def test_cp_bad_input(cli: Cli, seeded: Repository, repo_path: str, tmp_path: Path) -> None:
    before = _head(seeded)
    org = repo_path.split("/")[0]
    assert "No such file or directory" in cli.fails("cp", str(tmp_path / "missing"), f"tilde://{repo_path}/")
    folder = tmp_path / "folder"
    folder.mkdir()
    assert "is a directory (use -r" in cli.fails("cp", str(folder), f"tilde://{repo_path}/")
    # A socket exists but cannot be opened, whoever runs the test (root reads any regular file).
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "sock"))
        assert f"{tmp_path / 'sock'}: No such device or address" in cli.fails(
            "cp", str(tmp_path / "sock"), f"tilde://{repo_path}/"
        )
    if os.geteuid() != 0:
        secret = tmp_path / "secret.txt"
        secret.write_text("x")
        secret.chmod(0)
        assert "Permission denied" in cli.fails("cp", str(secret), f"tilde://{repo_path}/")
    assert "must be a tilde://" in cli.fails("cp", str(folder), str(tmp_path / "other"))
    assert "within one repository" in cli.fails(
        "cp", f"tilde://{repo_path}/a.txt", f"tilde://{org}/other/a.txt"
    )
    assert "not found (404)" in cli.fails("cp", f"tilde://{repo_path}/nope.txt", str(tmp_path))
    assert "names a prefix; use -r" in cli.fails("cp", f"tilde://{repo_path}/dir/", str(tmp_path))
    assert "not found (404)" in cli.fails("cp", f"tilde://{repo_path}/nope", f"tilde://{repo_path}/x")
    real = tmp_path / "real.txt"
    real.write_text("x")
    assert "repository 'missing' not found" in cli.fails("cp", str(real), f"tilde://{org}/missing/")
    assert _head(seeded) == before


@pytest.mark.parametrize("quiet", [False, True])
def test_cp_is_quiet_when_stderr_is_not_a_terminal(
    cli: Cli, repo: Repository, repo_path: str, tmp_path: Path, quiet: bool
) -> None:
    local = tmp_path / "f.bin"
    local.write_bytes(b"x" * 1000)
    args = ["cp", str(local), f"tilde://{repo_path}/f.bin"] + (["--quiet"] if quiet else [])
    result = cli.ok(*args)
    # One summary line, no bar: click's runner is not a terminal.
    assert len(result.stderr.splitlines()) == 1
    assert "%|" not in result.stderr


def test_cat_into_a_closed_pipe_stops_quietly(server: LocalServer, repo: Repository, repo_path: str) -> None:
    with repo.session() as session:
        session.objects.put("big.bin", os.urandom(8 * 1024 * 1024))
        session.commit("big")
    env = {**os.environ, "TILDE_ENDPOINT_URL": server.endpoint_url, "TILDE_API_KEY": server.api_key}
    process = subprocess.Popen(
        [sys.executable, "-m", "tilde", "cat", f"tilde://{repo_path}/big.bin"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert len(process.stdout.read(10)) == 10
        process.stdout.close()  # like `| head -c 10`
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert err == b""
    assert process.returncode == 141
