"""The start-up sweep of temporary files a killed server left in the blob store (real files, real SQLite)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from storage_helpers import ALICE

from tilde.server.storage import StorageEngine
from tilde.server.storage.blobs import LocalBlobStore


def _leftovers(tmp_dir: Path) -> list[Path]:
    """What a ``kill -9`` in the middle of writes leaves: a blob write, a concatenation, a batch spool."""
    files = [tmp_dir / "w-abc123.tmp", tmp_dir / "c-def456.tmp", tmp_dir / "batch-789.tar"]
    for path in files:
        path.write_bytes(b"half written")
    return files


def test_opening_the_store_alone_sweeps_every_fresh_leftover(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LocalBlobStore(tmp_path / "blobs")
    files = _leftovers(writer.tmp_dir)
    # While another process (here: another handle) has the store open, fresh files may be its own.
    shared = LocalBlobStore(tmp_path / "blobs")
    assert all(path.exists() for path in files)
    assert shared.swept == 0
    shared.close()
    writer.close()  # the process that wrote them is gone (killed: its lock went with it)
    with caplog.at_level(logging.WARNING, logger="tilde.server.storage"):
        reopened = LocalBlobStore(tmp_path / "blobs")
    assert [path.exists() for path in files] == [False, False, False]
    assert reopened.swept == 3
    assert "swept 3 orphaned temporary files" in caplog.text
    reopened.close()


def test_engine_keeps_the_files_of_live_uploads_and_sweeps_the_others(tmp_path: Path) -> None:
    engine = StorageEngine.open(tmp_path / "data")
    engine.init_repository("repo")
    session = engine.create_session("repo", ALICE).id
    live = engine.create_upload("repo", session, "big.bin", part_size=4)
    writer = engine.part_writer(live, 1)
    assert writer is not None
    writer.write(b"abcd")
    first_etag = writer.commit()
    # An upload file whose upload is gone (the crash came between forgetting the upload and deleting it).
    tmp_dir = tmp_path / "data" / "blobs" / "tmp"
    orphan = tmp_dir / "u-0123456789abcdef.tmp"
    orphan.write_bytes(b"parts of a forgotten upload")
    engine.close()

    reopened = StorageEngine.open(tmp_path / "data")
    assert not orphan.exists()
    assert (tmp_dir / f"u-{live}.tmp").exists()
    # The live upload can still be completed after the restart, with the part sent before it.
    writer = reopened.part_writer(live, 2)
    assert writer is not None
    writer.write(b"ef")
    parts = [(1, first_etag), (2, writer.commit())]
    version = reopened.complete_upload("repo", session, "big.bin", live, parts, content_type="x/y")
    assert reopened.blobs.path(version.blob).read_bytes() == b"abcdef"
    reopened.close()
