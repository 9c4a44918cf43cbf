"""One client shared across threads: 16 threads put 200 objects into one session, and all are committed.

docs/guides/configuration.md says a client (and a session handle) may be shared across threads; this is the
proof. Nothing here is timed.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

import tilde

if TYPE_CHECKING:
    from tilde.server import LocalServer

THREADS = 16
OBJECTS = 200


@pytest.fixture
def client(server: LocalServer) -> Iterator[tilde.Client]:
    with tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as c:
        yield c


def test_sixteen_threads_put_into_one_session_and_every_object_is_committed(
    client: tilde.Client, repo_path: str
) -> None:
    repo = client.repository(repo_path)
    expected = {f"threads/{n:03d}.txt": f"object {n}\n".encode() * (n + 1) for n in range(OBJECTS)}

    with repo.session() as session:

        def put(path: str) -> str:
            return session.objects.put(path, expected[path]).path

        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            written = list(pool.map(put, sorted(expected)))
        commit_id = session.commit(f"{OBJECTS} objects from {THREADS} threads")

    assert sorted(written) == sorted(expected)
    assert commit_id
    commit = repo.commits.get(commit_id)
    listed = {entry.path: entry for entry in commit.objects.list(prefix="threads/")}
    assert sorted(listed) == sorted(expected)
    for path, data in expected.items():
        with commit.objects.get(path) as reader:
            assert reader.read() == data
