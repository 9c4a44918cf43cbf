"""fsspec's own abstract filesystem test-suite, run on ``tilde://`` against a real server.

Where it applies: directories exist only while objects are under them (no empty directories).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

from tilde.data.fsspec import TildeFileSystem


class TildeFixtures(AbstractFixtures):  # type: ignore[misc]
    @pytest.fixture
    def fs(self, fs: TildeFileSystem) -> TildeFileSystem:
        return fs

    @pytest.fixture
    def fs_path(self, repo_path: str) -> str:
        return repo_path

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return lambda *parts: "/".join(str(part) for part in parts)

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False


class TestTildeGet(AbstractGetTests, TildeFixtures):  # type: ignore[misc]
    pass


class TestTildePut(AbstractPutTests, TildeFixtures):  # type: ignore[misc]
    pass


class TestTildeCopy(AbstractCopyTests, TildeFixtures):  # type: ignore[misc]
    pass


class TestTildeOpen(AbstractOpenTests, TildeFixtures):  # type: ignore[misc]
    pass


class TestTildePipe(AbstractPipeTests, TildeFixtures):  # type: ignore[misc]
    pass
