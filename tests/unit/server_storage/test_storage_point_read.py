"""The head a read sees is one statement on SQLite: no transaction is opened and ended around it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from storage_helpers import commit_files

from tilde.server.storage import StorageEngine
from tilde.server.storage.sqlite import SQLiteMetadataStore


@contextmanager
def _statements(engine: StorageEngine) -> Iterator[list[str]]:
    """Record the statements the engine's pooled SQLite connections run inside the block."""
    meta = engine.meta
    assert isinstance(meta, SQLiteMetadataStore)
    seen: list[str] = []
    connection = meta._acquire()  # the one the next read gets back from the pool
    meta._release(connection)
    connection.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        connection.set_trace_callback(None)


def test_the_head_is_read_with_one_statement(engine: StorageEngine, repo: str) -> None:
    with _statements(engine) as seen:
        assert engine.view_commit(repo) is None
    assert len(seen) == 1
    assert seen[0].lstrip().upper().startswith("SELECT")


def test_the_head_and_a_ref_still_name_their_commits(engine: StorageEngine, repo: str) -> None:
    first = commit_files(engine, repo, {"a.txt": b"a"})
    second = commit_files(engine, repo, {"a.txt": b"b"})
    assert engine.view_commit(repo) == second
    assert engine.view_commit(repo, first[:12]) == first
