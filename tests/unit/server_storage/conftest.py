"""Fixtures for the storage engine tests: a real engine (SQLite + blob files) in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tilde.server.storage import StorageEngine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[StorageEngine]:
    eng = StorageEngine.open(tmp_path / "data")
    yield eng
    eng.close()


@pytest.fixture
def repo(engine: StorageEngine) -> str:
    engine.init_repository("repo-1")
    return "repo-1"
