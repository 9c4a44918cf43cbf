"""Progress bars for ``tilde cp``: the CLI's rendering of `tilde.data.transfers.TransferProgress`.

The bar is tqdm's, drawn on stderr, and only when stderr is a terminal and ``--quiet`` was not given, so
pipes, logs and scripts see nothing but the final summary line.

Why tqdm rather than rich: tqdm is one pure-Python package (about 170 KB of source) with no dependencies;
rich brings ``pygments`` and ``markdown-it-py`` along (several MB installed) and a heavier import. We draw
one bar (bytes, files, rate, ETA), which tqdm does well. Either costs tens of milliseconds to import, so the
bar is imported only when a transfer starts with a terminal attached: ``tilde --help`` and scripted runs
never pay for it.
"""

from __future__ import annotations

import sys
import threading
from typing import IO, Any

from tilde.cli._runtime import stderr_is_terminal

__all__ = ["BarProgress", "ProgressReader", "make_progress"]


class BarProgress:
    """A `TransferProgress` drawn as one tqdm bar of bytes, with files done/total after it.

    Safe to call from the transfer's worker threads.

    Args:
        description: The bar's label, e.g. ``"upload"``.
        stream: Where to draw (default: stderr).

    """

    def __init__(self, description: str, stream: IO[str] | None = None) -> None:
        self._description = description
        self._stream = stream
        self._lock = threading.Lock()
        self._bar: Any = None
        self._files = 0
        self._total_files: int | None = None

    def start(self, *, total_files: int | None, total_bytes: int | None) -> None:
        """Draw the bar (totals may be unknown: then it counts without an ETA)."""
        import importlib

        # Looked up by name: tqdm ships no type information, and the bar is used only through these calls.
        tqdm = importlib.import_module("tqdm").tqdm
        with self._lock:
            self._total_files = total_files
            self._bar = tqdm(
                total=total_bytes,
                desc=self._description,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self._stream or sys.stderr,
                dynamic_ncols=True,
                leave=True,
            )
            self._bar.set_postfix_str(self._files_text(), refresh=False)

    def _files_text(self) -> str:
        total = "?" if self._total_files is None else str(self._total_files)
        return f"{self._files}/{total} files"

    def advance(self, *, files: int = 0, bytes: int = 0) -> None:
        """Count finished files and transferred bytes."""
        with self._lock:
            if self._bar is None:
                return
            if files:
                self._files += files
                self._bar.set_postfix_str(self._files_text(), refresh=False)
            self._bar.update(bytes)

    def finish(self) -> None:
        """Close the bar, leaving its final state on screen."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None


def make_progress(description: str, *, quiet: bool) -> BarProgress | None:
    """Return a bar when one should be drawn: stderr is a terminal and ``--quiet`` is off.

    Args:
        description: The bar's label.
        quiet: The command's ``--quiet`` flag.

    Returns:
        The progress renderer, or None.

    """
    if quiet or not stderr_is_terminal():
        return None
    return BarProgress(description)


class ProgressReader:
    """A binary file wrapper that reports the bytes read from it (one-file uploads).

    Args:
        handle: The open file.
        progress: Told of every read.

    """

    def __init__(self, handle: IO[bytes], progress: BarProgress) -> None:
        self._handle = handle
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        """Read and report."""
        data = self._handle.read(size)
        self._progress.advance(bytes=len(data))
        return data

    def seekable(self) -> bool:
        """Whether the file can seek (it can: it is a regular file)."""
        return self._handle.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move in the file."""
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        """Return the current position."""
        return self._handle.tell()
