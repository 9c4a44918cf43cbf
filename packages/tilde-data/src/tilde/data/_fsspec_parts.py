"""The file object, transaction and naming helpers of the ``tilde://`` filesystem (`tilde.data.fsspec`).

Kept apart from the filesystem class so each module stays small; like `tilde.data.fsspec`, it imports
fsspec, so nothing in ``import tilde.data`` imports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from fsspec.spec import AbstractBufferedFile  # type: ignore[import-untyped]
from fsspec.transaction import Transaction  # type: ignore[import-untyped]

from tilde.core.errors import TildeError

if TYPE_CHECKING:
    from tilde.data.fsspec import TildeFileSystem
    from tilde.data.models import Entry
    from tilde.data.sessions import Session
    from tilde.data.urls import TildeURL

__all__ = [
    "TildeFile",
    "TildeTransaction",
    "add_directories",
    "entry_name",
    "file_info",
    "missing",
    "run_parallel",
]


class TildeFile(AbstractBufferedFile):  # type: ignore[misc]
    """A file opened on a `TildeFileSystem`: ``rb`` reads by ranged GETs, ``wb`` uploads on close.

    Reading goes through fsspec's block caches (read-ahead by default), each miss one ranged GET. Writing
    keeps the bytes in memory and uploads them when the file is closed: into the filesystem's transaction
    session inside ``with fs.transaction:``, otherwise in a session of its own that is committed at once.

    Args:
        fs: The filesystem.
        path: The path without the protocol (``ORG/REPO[@REF]/PATH``).
        mode: ``"rb"`` or ``"wb"`` (the filesystem turns ``"xb"`` into ``"wb"`` after checking that nothing
            exists at ``path``).
        **kwargs: Passed on to `fsspec.spec.AbstractBufferedFile`.

    Raises:
        ValueError: Any other mode.

    """

    def __init__(self, fs: TildeFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        if mode not in ("rb", "wb"):
            raise ValueError(f"tilde:// files open in 'rb', 'wb' or 'xb' mode, not {mode!r}")
        super().__init__(fs, path, mode, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        fs: TildeFileSystem = self.fs
        data: bytes = fs.cat_file(self.path, start=start, end=end)
        return data

    def _initiate_upload(self) -> None:
        # The upload happens once, on close, so that a file is never half-written in the repository.
        return None

    def _upload_chunk(self, final: bool = False) -> bool:
        if not final:
            return False  # keep buffering: fsspec leaves the buffer in place when this answers False
        fs: TildeFileSystem = self.fs
        fs.pipe_file(self.path, self.buffer.getvalue())
        return True


class TildeTransaction(Transaction):  # type: ignore[misc]
    """``with fs.transaction:`` on a `TildeFileSystem`: one session per repository written, one commit each.

    Sessions open on the first write to their repository. Leaving the block normally commits each of them with
    the filesystem's `commit_message`; leaving it with an exception rolls them all back, so nothing lands.

    Args:
        fs: The filesystem.
        **kwargs: Accepted for fsspec's signature; unused.

    """

    def __init__(self, fs: TildeFileSystem, **kwargs: Any) -> None:
        super().__init__(fs, **kwargs)
        #: The open sessions, by ``"ORG/REPO"``.
        self.sessions: dict[str, Session] = {}
        #: The commit ids made when the transaction completed, by ``"ORG/REPO"``.
        self.commits: dict[str, str | None] = {}

    def complete(self, commit: bool = True) -> None:
        """End the transaction: commit every session (``commit=True``) or roll every one back.

        Args:
            commit: Commit rather than roll back.

        Raises:
            TildeError: A commit failed; the sessions not yet committed are rolled back first.

        """
        sessions, self.sessions = self.sessions, {}
        fs: TildeFileSystem | None = self.fs
        message = fs.commit_message if fs is not None else ""
        try:
            pending = list(sessions.items())
            while pending:
                repo_path, session = pending.pop(0)
                if commit:
                    try:
                        self.commits[repo_path] = session.commit(message)
                    except BaseException:
                        for _, rest in pending:
                            with contextlib.suppress(TildeError):
                                rest.rollback()
                        raise
                else:
                    with contextlib.suppress(TildeError):
                        session.rollback()
        finally:
            super().complete(commit)


def run_parallel(jobs: list[Callable[[], object]], *, max_workers: int) -> None:
    """Run ``jobs`` on up to ``max_workers`` threads; the first failure is raised once all have ended.

    Args:
        jobs: What to run.
        max_workers: Threads at most.

    """
    if len(jobs) <= 1 or max_workers <= 1:
        for job in jobs:
            job()
        return
    with ThreadPoolExecutor(max_workers=min(max_workers, len(jobs))) as pool:
        futures = [pool.submit(job) for job in jobs]
    for future in futures:
        future.result()


def entry_name(url: TildeURL, path: str) -> str:
    """Return the fsspec name (no protocol) of ``path`` in ``url``'s repository, at ``url``'s ref.

    Args:
        url: Any location in the repository (its ref is kept).
        path: The object path or prefix (``""`` for the repository itself).

    Returns:
        ``ORG/REPO[@REF][/PATH]``.

    """
    base = f"{url.repo_path}@{url.ref}" if url.ref else url.repo_path
    return f"{base}/{path}" if path else base


def missing(url: TildeURL) -> FileNotFoundError:
    """Return the error for a location where nothing exists (for the caller to raise).

    Args:
        url: The location.

    Returns:
        A `FileNotFoundError` naming the URL.

    """
    return FileNotFoundError(f"tilde://{entry_name(url, url.path)}")


def file_info(url: TildeURL, path: str, entry: Entry | None) -> dict[str, Any]:
    """Return fsspec's description of a listed object.

    Args:
        url: A location in the object's repository (its ref is kept in the name).
        path: The object path.
        entry: The listing's attributes of the object.

    Returns:
        ``name``, ``size``, ``type`` (``"file"``), ``etag``, ``last_modified`` and ``content_type``.

    """
    return {
        "name": entry_name(url, path),
        "size": entry.size if entry is not None and entry.size is not None else 0,
        "type": "file",
        "etag": entry.e_tag if entry is not None else None,
        "last_modified": entry.last_modified if entry is not None else None,
        "content_type": entry.content_type if entry is not None else None,
    }


def add_directories(found: dict[str, dict[str, Any]], url: TildeURL, prefix: str, parts: list[str]) -> None:
    """Add to ``found`` the directories ``prefix + parts[:1]``, ``prefix + parts[:2]`` … of a listed path.

    Args:
        found: Infos by name, updated in place.
        url: A location in the repository.
        prefix: Where the listing started (empty or ending in ``/``).
        parts: The directory names below ``prefix``.

    """
    for depth in range(1, len(parts) + 1):
        name = entry_name(url, prefix + "/".join(parts[:depth]))
        found.setdefault(name, {"name": name, "size": 0, "type": "directory"})
