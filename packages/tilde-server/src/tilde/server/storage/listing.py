"""Paged listings over path-ordered row sources: scanning, session overlays and delimiter collapsing.

A source is a ``fetch(keys, limit)`` function returning rows in path order. Scans fetch in growing batches,
so a listing that jumps over collapsed common prefixes reads a few rows per jump instead of a full page each
time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from tilde.server.storage.errors import InvalidArgument
from tilde.server.storage.metadata import KeyRange, VersionRecord
from tilde.server.storage.paths import prefix_upper_bound
from tilde.server.storage.types import Page

__all__ = ["collect_page", "overlay", "scan"]

_FIRST_BATCH = 8
_MAX_BATCH = 1000


class _HasPath(Protocol):
    @property
    def path(self) -> str: ...


R = TypeVar("R", bound=_HasPath)
T = TypeVar("T")


def scan(
    fetch: Callable[[KeyRange, int], Sequence[R]], keys: KeyRange, *, first_batch: int = _FIRST_BATCH
) -> Iterator[R]:
    """Iterate every row of a source within ``keys``, fetching in batches that double up to 1000.

    Args:
        fetch: The source.
        keys: The key range to scan.
        first_batch: Size of the first fetch.

    Yields:
        Rows in path order.

    """
    batch = max(1, min(first_batch, _MAX_BATCH))
    while True:
        rows = fetch(keys, batch)
        yield from rows
        if len(rows) < batch:
            return
        keys = KeyRange(rows[-1].path, False, keys.end)
        batch = min(batch * 2, _MAX_BATCH)


def overlay(base: Iterator[VersionRecord], staged: Iterator[VersionRecord]) -> Iterator[VersionRecord]:
    """Merge staged rows over base rows (both in path order): staged rows win, staged deletions hide.

    Args:
        base: Committed versions.
        staged: Staged rows, deletions included.

    Yields:
        The visible versions, in path order.

    """
    sentinel = None
    next_base = next(base, sentinel)
    next_staged = next(staged, sentinel)
    while next_base is not None or next_staged is not None:
        if next_staged is None or (next_base is not None and next_base.path < next_staged.path):
            assert next_base is not None
            yield next_base
            next_base = next(base, sentinel)
            continue
        if next_base is not None and next_base.path == next_staged.path:
            next_base = next(base, sentinel)
        if not next_staged.deleted:
            yield next_staged
        next_staged = next(staged, sentinel)


def _common_prefix(path: str, prefix: str, delimiter: str) -> str | None:
    index = path.find(delimiter, len(prefix))
    return None if index < 0 else path[: index + len(delimiter)]


def collect_page(
    open_scan: Callable[[KeyRange], Iterator[R]],
    *,
    prefix: str,
    delimiter: str,
    after: str,
    limit: int,
    to_item: Callable[[R], T],
    to_prefix: Callable[[str], T],
) -> Page[T]:
    """Build one page of a listing.

    Rows sharing the text up to the first ``delimiter`` after ``prefix`` collapse into one prefix item, placed
    where their first row would be; the scan then jumps past all of them.

    Args:
        open_scan: Opens a path-ordered scan of the source from a key range.
        prefix: Only paths starting with this.
        delimiter: Collapse common prefixes up to this string (empty = no collapsing).
        after: Cursor: only items after this path or prefix.
        limit: Page size (at least 1).
        to_item: Turns a row into an item.
        to_prefix: Turns a common prefix into an item.

    Returns:
        The page; its cursor is the last item's path or prefix.

    Raises:
        InvalidArgument: When ``limit`` is below 1.

    """
    if limit < 1:
        raise InvalidArgument("limit must be at least 1")
    end = prefix_upper_bound(prefix) if prefix else None
    keys: KeyRange | None = KeyRange(prefix, True, end)
    if after and after >= prefix:
        keys = KeyRange(after, False, end)
        common = _common_prefix(after, prefix, delimiter) if delimiter and after.startswith(prefix) else None
        if common is not None:
            # The cursor is a collapsed prefix (or inside one): continue after everything it covers.
            upper = prefix_upper_bound(common)
            keys = None if upper is None else KeyRange(upper, True, end)
        if end is not None and after >= end:
            keys = None
    found: list[tuple[str, T]] = []
    while keys is not None and len(found) <= limit:
        current, keys = keys, None
        for row in open_scan(current):
            common = _common_prefix(row.path, prefix, delimiter) if delimiter else None
            if common is None:
                found.append((row.path, to_item(row)))
                if len(found) > limit:
                    break
                continue
            found.append((common, to_prefix(common)))
            upper = prefix_upper_bound(common)
            if upper is not None:
                keys = KeyRange(upper, True, end)
            break
    has_more = len(found) > limit
    found = found[:limit]
    return Page(
        items=[item for _, item in found], has_more=has_more, next_cursor=found[-1][0] if has_more else None
    )
