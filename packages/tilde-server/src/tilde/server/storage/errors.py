"""Errors raised by the storage engine.

Every failure the engine reports is one of these, so the HTTP layer can map them to status codes in one place.
Each error carries a short machine-readable ``code`` and a human ``message``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "Conflict",
    "InvalidArgument",
    "NotFound",
    "RangeNotSatisfiable",
    "SessionClosed",
    "StorageError",
]


class StorageError(Exception):
    """Base class of every storage engine error.

    Attributes:
        code: Short machine-readable error code.
        message: Human-readable description.

    """

    code: str = "storage_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class NotFound(StorageError):
    """The named thing (repository, session, commit, object, upload) does not exist.

    Attributes:
        what: What was looked up, e.g. ``"object 'a/b.txt'"``.

    """

    code = "not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class Conflict(StorageError):
    """The operation conflicts with the current state (e.g. a path changed after a session's base).

    Attributes:
        paths: The conflicting paths, when known.

    """

    code = "conflict"

    def __init__(self, message: str, paths: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.paths = list(paths)


class InvalidArgument(StorageError):
    """An argument is malformed (bad path, unknown part, wrong size, ...)."""

    code = "invalid_argument"


class SessionClosed(StorageError):
    """The session is no longer open: committed, rolled back, or pending approval."""

    code = "session_closed"


class RangeNotSatisfiable(StorageError):
    """A requested byte range lies outside the object."""

    code = "range_not_satisfiable"
