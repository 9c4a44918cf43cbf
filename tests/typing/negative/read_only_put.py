"""Writing through a commit's read-only objects must not type-check."""

from __future__ import annotations

import tilde


def write_to_history(repo: tilde.Repository) -> None:
    commit = next(repo.commits.list())
    commit.objects.put("x.txt", b"x")  # expect-error
