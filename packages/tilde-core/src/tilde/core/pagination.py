"""Lazy iteration over paginated list endpoints (CONTRACT §3).

A page is requested with ``amount=<page size>`` and, after the first, ``after=<cursor>``; the answer is
``{"results": [...], "pagination": {"has_more": ..., "next_offset": ..., "max_per_page": ...}}``.
Iteration stops when a page says ``has_more: false`` or comes back empty.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tilde.core.errors import SerializationError

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AsyncPaginatedIterator",
    "PageResult",
    "PaginatedIterator",
    "check_amount",
    "check_page_size",
    "page_query",
    "parse_page",
]

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass
class PageResult(Generic[T]):
    """One page of a list.

    Attributes:
        items: The parsed items of this page.
        has_more: Whether the server has more items after this page.
        next_offset: The cursor to send as ``after`` for the next page.
        max_per_page: The server's maximum page size, when it says.

    """

    items: list[T] = field(default_factory=list)
    has_more: bool = False
    next_offset: str | None = None
    max_per_page: int | None = None


def check_page_size(page_size: int | None) -> int:
    """Validate the wire page size.

    Args:
        page_size: Items per request, or None for the default (100).

    Returns:
        The page size to send.

    Raises:
        ValueError: Not an integer between 1 and 1000.

    """
    if page_size is None:
        return DEFAULT_PAGE_SIZE
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be an integer between 1 and {MAX_PAGE_SIZE}, got {page_size!r}")
    return page_size


def check_amount(amount: int | None) -> int | None:
    """Validate a total cap on items.

    Args:
        amount: The cap, or None for no cap.

    Returns:
        The cap.

    Raises:
        ValueError: Negative or not an integer.

    """
    if amount is None:
        return None
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError(f"amount must be a non-negative integer, got {amount!r}")
    return amount


def page_query(params: Mapping[str, Any] | None, page_size: int, cursor: str | None) -> dict[str, Any]:
    """Build the query of one paginated request: the caller's filters, ``amount`` and ``after``.

    Args:
        params: The caller's filters.
        page_size: The validated wire page size.
        cursor: The cursor to continue after (None for the first page).

    Returns:
        The query parameters.

    """
    query = {**(params or {}), "amount": page_size}
    if cursor is not None:
        query["after"] = cursor
    return query


def parse_page(body: Any, parse: Callable[[dict[str, Any]], T]) -> PageResult[T]:
    """Convert a list response body into a `PageResult`.

    Args:
        body: The decoded JSON body.
        parse: Converts one item (a JSON object) into the caller's type.

    Returns:
        The page. A missing ``pagination`` block means a single, final page.

    Raises:
        SerializationError: The body, ``results`` or an item has the wrong JSON type.

    """
    if not isinstance(body, dict):
        raise SerializationError("list response is not a JSON object")
    results = body.get("results")
    if results is None:
        results = []
    if not isinstance(results, list):
        raise SerializationError("list response 'results' is not an array")
    items: list[T] = []
    for item in results:
        if not isinstance(item, dict):
            raise SerializationError("list response item is not a JSON object")
        items.append(parse(item))
    pagination = body.get("pagination")
    if not isinstance(pagination, dict):
        return PageResult(items)
    next_offset = pagination.get("next_offset")
    max_per_page = pagination.get("max_per_page")
    return PageResult(
        items,
        has_more=bool(pagination.get("has_more", False)),
        next_offset=None if next_offset is None or next_offset == "" else str(next_offset),
        max_per_page=max_per_page
        if isinstance(max_per_page, int) and not isinstance(max_per_page, bool)
        else None,
    )


class _Cursor(Generic[T]):
    """The bookkeeping both iterators share: buffer, cap, cursor and the stop rules."""

    def __init__(self, limit: int | None, after: str | None) -> None:
        self.limit = check_amount(limit)
        self.cursor = after
        self.buffer: deque[T] = deque()
        self.yielded = 0
        self.finished = limit == 0

    def take(self) -> T:
        """Pop the next buffered item (the caller checks the buffer is not empty)."""
        self.yielded += 1
        if self.limit is not None and self.yielded >= self.limit:
            self.finished = True
        return self.buffer.popleft()

    def absorb(self, page: PageResult[T]) -> None:
        """Take in a fetched page and decide whether another may follow."""
        items = page.items
        if self.limit is not None:
            items = items[: self.limit - self.yielded]
        self.buffer = deque(items)
        if not page.items or not page.has_more:
            self.finished = True
            return
        if self.limit is not None and self.yielded + len(self.buffer) >= self.limit:
            return  # the cap ends iteration within this page, so the cursor is never used
        if page.next_offset is None:
            # Re-sending the previous cursor would return the same page forever.
            raise SerializationError("server reported has_more without a next_offset cursor")
        if page.next_offset == self.cursor:
            raise SerializationError(f"server returned the same cursor twice ({page.next_offset!r})")
        self.cursor = page.next_offset


class PaginatedIterator(Iterator[T]):
    """A lazy, single-pass iterator over every item of a paginated list.

    Nothing is requested until the first `next`; each further page is requested only when the previous one
    has been consumed. Call the list method again to iterate again.

    Args:
        fetch_page: Requests the page after the given cursor (None for the first page).
        limit: Cap on the total number of items yielded; 0 means no request at all.
        after: Cursor to start after.

    """

    def __init__(
        self,
        fetch_page: Callable[[str | None], PageResult[T]],
        *,
        limit: int | None = None,
        after: str | None = None,
    ) -> None:
        self._fetch_page = fetch_page
        self._state: _Cursor[T] = _Cursor(limit, after)

    def __iter__(self) -> PaginatedIterator[T]:
        return self

    def __next__(self) -> T:
        state = self._state
        while True:
            if state.buffer:
                return state.take()
            if state.finished:
                raise StopIteration
            state.absorb(self._fetch_page(state.cursor))

    def __repr__(self) -> str:
        return f"<PaginatedIterator yielded={self._state.yielded} finished={self._state.finished}>"


class AsyncPaginatedIterator(AsyncIterator[T]):
    """The ``async for`` counterpart of `PaginatedIterator` (same laziness, cap and stop rules).

    Args:
        fetch_page: Coroutine requesting the page after the given cursor (None for the first page).
        limit: Cap on the total number of items yielded; 0 means no request at all.
        after: Cursor to start after.

    """

    def __init__(
        self,
        fetch_page: Callable[[str | None], Awaitable[PageResult[T]]],
        *,
        limit: int | None = None,
        after: str | None = None,
    ) -> None:
        self._fetch_page = fetch_page
        self._state: _Cursor[T] = _Cursor(limit, after)

    def __aiter__(self) -> AsyncPaginatedIterator[T]:
        return self

    async def __anext__(self) -> T:
        state = self._state
        while True:
            if state.buffer:
                return state.take()
            if state.finished:
                raise StopAsyncIteration
            state.absorb(await self._fetch_page(state.cursor))

    def __repr__(self) -> str:
        return f"<AsyncPaginatedIterator yielded={self._state.yielded} finished={self._state.finished}>"
