"""Local file names become object paths in Unicode NFC, whatever form the file system lists them in.

The server stores paths byte-exact (NFC and NFD spellings are two objects), so the SDK and the command line
pick one form for names they read from a disk: NFC, the form people type. A file system that hands back
decomposed names (macOS) is played here by creating the files with decomposed names on Linux. The command
line's copy is tested with the other commands (tests/e2e/cli).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from tilde.data import ReadOnlyObjects, Repository

NFC = "caf\u00e9"
NFD = "cafe\u0301"


def _paths(repo: Repository) -> list[str]:
    return sorted(e.path for e in ReadOnlyObjects(repo._client, repo.org, repo.name).list())


def test_folder_upload_names_objects_in_nfc(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / NFD).mkdir()
    (tmp_path / NFD / f"{NFD}.txt").write_bytes(b"decomposed on disk")
    with repo.session() as session:
        result = session.objects.upload_folder(tmp_path, "up", include=[f"{NFC}/*"])
        session.commit("unicode")
    assert result.paths == [f"up/{NFC}/{NFC}.txt"]
    assert _paths(repo) == [f"up/{NFC}/{NFC}.txt"]
    assert all(unicodedata.is_normalized("NFC", p) for p in _paths(repo))


def test_two_spellings_of_one_name_in_a_folder_are_refused(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / f"{NFC}.txt").write_bytes(b"composed")
    (tmp_path / f"{NFD}.txt").write_bytes(b"decomposed")
    with repo.session() as session, pytest.raises(ValueError, match="both name"):
        session.objects.upload_folder(tmp_path)
