"""Sessions racing to commit: staged one by one, then committed at once, each from its own thread."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tilde.core.errors import ConflictError
from tilde.data import Repository, Session

__all__ = ["commit_at_once", "stage_racers"]


def stage_racers(repo: Repository, paths: Sequence[str]) -> list[Session]:
    """Open one session per path, each staging ``racer N`` at its path (nothing committed yet)."""
    sessions = []
    for number, path in enumerate(paths):
        session = repo.session()
        session.objects.put(path, f"racer {number}".encode())
        sessions.append(session)
    return sessions


def commit_at_once(
    sessions: Sequence[Session],
) -> tuple[list[str], list[ConflictError], list[BaseException]]:
    """Commit every session at the same moment; return the commit ids, the conflicts and any other error."""
    barrier = threading.Barrier(len(sessions))
    commits: list[str] = []
    conflicts: list[ConflictError] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def commit(number: int) -> None:
        barrier.wait()
        try:
            commit_id = sessions[number].commit(f"racer {number}")
            with lock:
                commits.append(str(commit_id))
        except ConflictError as error:
            with lock:
                conflicts.append(error)
        except BaseException as error:  # reported by the caller, with the others
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=commit, args=(number,)) for number in range(len(sessions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return commits, conflicts, errors
