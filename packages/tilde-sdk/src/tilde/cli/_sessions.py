"""Reading and writing through one session: the object views commands use, and the one-line commit report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tilde.cli._runtime import client, info

if TYPE_CHECKING:
    from tilde.data import Entry, ListingEntry, ReadOnlyObjects, Session
    from tilde.data.urls import TildeURL

__all__ = ["commit_and_report", "entry_fields", "read_objects"]


def read_objects(location: TildeURL) -> ReadOnlyObjects:
    """Return a read-only view of the location's repository, at its ``@REF`` or the latest commit.

    Args:
        location: The parsed ``tilde://`` URL.

    Returns:
        The object view (no request is made).

    """
    from tilde.data import ReadOnlyObjects

    return ReadOnlyObjects(client(), location.org, location.repo, ref=location.ref)


def entry_fields(item: ListingEntry) -> dict[str, Any]:
    """Return the ``--json`` form of a listing or diff row: `ListingEntry`'s fields, its `Entry`'s inlined.

    Args:
        item: The row.

    Returns:
        ``path``, ``type``, ``status`` (diffs only) and, for objects, ``size``, ``last_modified``,
        ``e_tag``, ``content_type``, ``metadata``.

    """
    row: dict[str, Any] = {"path": item.path, "type": item.type}
    if item.status is not None:
        row["status"] = item.status
    entry: Entry | None = item.entry
    if entry is not None:
        row.update(
            size=entry.size,
            last_modified=entry.last_modified,
            e_tag=entry.e_tag,
            content_type=entry.content_type,
            metadata=entry.metadata,
        )
    return row


def commit_and_report(session: Session, message: str, what: str) -> str | None:
    """Commit the session and say on stderr where the change went.

    Args:
        session: The session with staged changes.
        message: The commit message.
        what: The change, e.g. ``"Uploaded 3 files (12 KiB)"``.

    Returns:
        The commit id, or None when the commit awaits approval.

    """
    result = session.commit_result(message)
    if result.status == "approval_required":
        info(f"{what}; the commit awaits approval at {result.web_url}")
        return None
    info(f"{what} in commit {result.commit_id}")
    return result.commit_id


def human_size(size: int | None) -> str:
    """Format a byte count for people (``1.5 MiB``).

    Args:
        size: Bytes, or None when unknown.

    Returns:
        The formatted size.

    """
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
