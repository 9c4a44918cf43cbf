"""Helpers shared by the ``tilde://`` filesystem's end-to-end tests."""

from __future__ import annotations

from tilde.data.fsspec import TildeFileSystem


def commit_count(fs: TildeFileSystem, repo_path: str) -> int:
    """Count the commits in the repository's log."""
    return sum(1 for _ in fs.client.repository(repo_path).commits.list())
