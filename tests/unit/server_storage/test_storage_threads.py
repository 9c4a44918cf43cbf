from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from storage_helpers import ALICE, put, read

from tilde.server.storage import Conflict, StorageEngine


def test_threads_committing_different_paths(engine: StorageEngine, repo: str) -> None:
    workers, rounds = 6, 8
    start = threading.Barrier(workers)

    def work(worker: int) -> list[str]:
        start.wait()
        ids = []
        for n in range(rounds):
            session = engine.create_session(repo, ALICE)
            put(engine, repo, session.id, f"w{worker}/f{n}", b"%d-%d" % (worker, n))
            put(engine, repo, session.id, f"w{worker}/latest", b"%d" % n)
            assert engine.list_objects(repo, session_id=session.id, prefix=f"w{worker}/").items
            outcome = engine.commit_session(repo, session.id, message=f"{worker}/{n}", actor=ALICE)
            assert outcome.commit is not None
            ids.append(outcome.commit.id)
        return ids

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(work, range(workers)))

    log = engine.log(repo, limit=1000).items
    assert len(log) == workers * rounds
    assert sorted(c.id for c in log) == sorted(i for ids in results for i in ids)
    assert [c.seq for c in log] == list(range(workers * rounds, 0, -1))
    head = engine.head(repo)
    assert head is not None
    assert head.object_count == workers * (rounds + 1)
    for worker in range(workers):
        assert read(engine, engine.stat(repo, f"w{worker}/latest")) == b"%d" % (rounds - 1)
        for n in range(rounds):
            assert read(engine, engine.stat(repo, f"w{worker}/f{n}")) == b"%d-%d" % (worker, n)


def test_threads_racing_on_one_path_commit_exactly_once(engine: StorageEngine, repo: str) -> None:
    workers = 6
    sessions = [engine.create_session(repo, ALICE) for _ in range(workers)]
    for n, session in enumerate(sessions):
        put(engine, repo, session.id, "contended", b"%d" % n)
    start = threading.Barrier(workers)

    def attempt(n: int) -> bool:
        start.wait()
        try:
            engine.commit_session(repo, sessions[n].id, message=str(n), actor=ALICE)
        except Conflict:
            engine.rollback_session(repo, sessions[n].id)
            return False
        return True

    with ThreadPoolExecutor(workers) as pool:
        won = list(pool.map(attempt, range(workers)))
    assert won.count(True) == 1
    winner = won.index(True)
    assert read(engine, engine.stat(repo, "contended")) == b"%d" % winner
    assert len(engine.log(repo).items) == 1
