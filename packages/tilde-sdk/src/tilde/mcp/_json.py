"""JSON forms of SDK models for tool results."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tilde.data import Commit, EntryRecord, ListingEntry

__all__ = ["commit_json", "entry_json", "record_json"]


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def entry_json(item: ListingEntry) -> dict[str, Any]:
    """Return a listing or diff row as JSON.

    Args:
        item: The row.

    Returns:
        ``path``, ``type``, ``status`` (diffs) and, for objects, ``size``, ``last_modified`` and
        ``content_type``.

    """
    row: dict[str, Any] = {"path": item.path, "type": item.type}
    if item.status is not None:
        row["status"] = item.status
    if item.entry is not None:
        row.update(
            size=item.entry.size,
            last_modified=_when(item.entry.last_modified),
            content_type=item.entry.content_type,
        )
    return row


def record_json(record: EntryRecord) -> dict[str, Any]:
    """Return an uncommitted change as JSON.

    Args:
        record: The staged change.

    Returns:
        ``path``, ``change`` (``"put"`` or ``"delete"``) and, for puts, ``size``.

    """
    entry = record.entry
    row: dict[str, Any] = {"path": record.path, "change": "delete" if entry is None else "put"}
    if entry is not None:
        row["size"] = entry.size
    return row


def commit_json(commit: Commit) -> dict[str, Any]:
    """Return a commit as JSON.

    Args:
        commit: A loaded commit.

    Returns:
        ``id``, ``message``, ``committer``, ``creation_date``, ``parents``.

    """
    return {
        "id": commit.id,
        "message": commit.message,
        "committer": commit.committer,
        "creation_date": _when(commit.creation_date),
        "parents": list(commit.parents or []),
    }
