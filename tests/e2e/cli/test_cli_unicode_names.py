"""``tilde cp`` of a local file into a prefix names the object after the file, in Unicode NFC.

The server stores paths byte-exact; a file system that lists names decomposed (macOS) is played by a file
created with a decomposed name.
"""

from __future__ import annotations

from pathlib import Path

from cli_helpers import Cli

from tilde.data import ReadOnlyObjects, Repository

NFC = "caf\u00e9"
NFD = "cafe\u0301"


def test_cli_copy_into_a_prefix_names_the_object_in_nfc(
    cli: Cli, repo: Repository, repo_path: str, tmp_path: Path
) -> None:
    local = tmp_path / f"{NFD}.txt"
    local.write_bytes(b"x")
    cli.ok("cp", str(local), f"tilde://{repo_path}/docs/")
    listed = ReadOnlyObjects(repo._client, repo.org, repo.name).list()
    assert [e.path for e in listed] == [f"docs/{NFC}.txt"]
