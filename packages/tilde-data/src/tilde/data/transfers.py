"""Folder transfers: the progress protocol and the result of `upload_folder` and `download`.

``session.objects.upload_folder(local_dir, prefix)`` puts the contents of a local folder under ``prefix`` in
one session; ``commit.objects.download(prefix, local_dir)`` (or a session's) writes what is under ``prefix``
into a local folder. Both run a bounded pool of worker threads and report to an optional `TransferProgress`,
which is all a user interface needs to implement (the ``tilde`` command line renders it as a progress bar;
this distribution depends on no UI library).

Example:
    A progress reporter printing one line per file::

        class Printer:
            def start(self, *, total_files, total_bytes):
                print(f"{total_files} files, {total_bytes} bytes")

            def advance(self, *, files=0, bytes=0):
                if files:
                    print(".", end="", flush=True)

            def finish(self):
                print()

        with repo.session() as session:
            session.objects.upload_folder("data/", "datasets/2024/", progress=Printer())
            session.commit("add the 2024 data set")

"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["FolderTransferResult", "TransferProgress"]


@runtime_checkable
class TransferProgress(Protocol):
    """Receives the progress of a folder transfer.

    Thread semantics: ``start`` and ``finish`` are called on the thread that called ``upload_folder`` or
    ``download``; ``advance`` is called from the transfer's worker threads, but never concurrently: calls
    are serialised by a lock, so an implementation needs no locking of its own. Each call should return
    quickly (it holds up the worker that made it). ``finish`` is called exactly once, also when the transfer
    fails.
    """

    def start(self, *, total_files: int | None, total_bytes: int | None) -> None:
        """Receive the totals (``None`` when unknown), once, before any bytes move."""
        ...

    def advance(self, *, files: int = 0, bytes: int = 0) -> None:
        """Record ``files`` finished and ``bytes`` moved since the previous call."""
        ...

    def finish(self) -> None:
        """End the report, once, whether the transfer succeeded or not."""
        ...


@dataclass
class FolderTransferResult:
    """What a folder transfer moved.

    Attributes:
        files: How many files were transferred.
        bytes: How many bytes they hold.
        paths: The object paths transferred, sorted.

    """

    files: int = 0
    bytes: int = 0
    paths: list[str] = field(default_factory=list)


class _NoProgress:
    def start(self, *, total_files: int | None, total_bytes: int | None) -> None:
        pass

    def advance(self, *, files: int = 0, bytes: int = 0) -> None:
        pass

    def finish(self) -> None:
        pass


class _SerialProgress:
    """Wraps a `TransferProgress` so worker threads call ``advance`` one at a time."""

    def __init__(self, progress: TransferProgress | None) -> None:
        self._progress: TransferProgress = progress if progress is not None else _NoProgress()
        self._lock = threading.Lock()

    def start(self, *, total_files: int | None, total_bytes: int | None) -> None:
        self._progress.start(total_files=total_files, total_bytes=total_bytes)

    def advance(self, *, files: int = 0, bytes: int = 0) -> None:
        if files or bytes:
            with self._lock:
                self._progress.advance(files=files, bytes=bytes)

    def finish(self) -> None:
        self._progress.finish()
