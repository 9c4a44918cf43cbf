"""Lazy iteration over paginated list endpoints (CONTRACT §3).

A page is requested with ``amount=<page size>`` and, after the first, ``after=<cursor>``; the answer is
``{"results": [...], "pagination": {"has_more": ..., "next_offset": ..., "max_per_page": ...}}``.
Iteration stops when a page says ``has_more: false`` or comes back empty.

Both iterators can be resumed: ``next_cursor`` is the cursor that continues exactly after the last item
handed out (pass it as ``after=`` to a new listing), ``has_more`` says whether anything may follow, and
``iter_pages()`` hands out whole pages. A client-side ``amount`` cap shrinks the last request's page size to
what is left of the cap, so the server's own cursor marks where the caller stopped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

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
    """The bookkeeping both iterators share: buffer, cap, cursors and the stop rules."""

    def __init__(self, limit: int | None, after: str | None, page_size: int | None) -> None:
        self.limit = check_amount(limit)
        self.page_size = page_size
        self.cursor = after  # what the next request sends as ``after``
        self.page_cursor = after  # what the current page was requested with
        self.page_next: str | None = after  # the server's cursor after the current page
        self.page_len = 0
        self.consumed = 0  # items of the current page handed out
        self.started = False
        self.more = True  # whether the server has items after the current page
        self.buffer: deque[T] = deque()
        self.yielded = 0
        self.finished = limit == 0
        self.probe: tuple[str | None, int, str | None] | None = None

    def wire_size(self) -> int:
        """Return the page size of the next request: the caller's, cut to what is left of the cap."""
        size = self.page_size if self.page_size is not None else DEFAULT_PAGE_SIZE
        if self.limit is None:
            return size
        return max(1, min(size, self.limit - self.yielded))

    def take(self) -> T:
        """Pop the next buffered item (the caller checks the buffer is not empty)."""
        self.yielded += 1
        self.consumed += 1
        if self.limit is not None and self.yielded >= self.limit:
            self.finished = True
        return self.buffer.popleft()

    def take_page(self) -> list[T]:
        """Pop every buffered item."""
        items = list(self.buffer)
        for _ in items:
            self.take()
        return items

    def absorb(self, page: PageResult[T]) -> None:
        """Take in a fetched page and decide whether another may follow."""
        self.started = True
        self.page_cursor = self.cursor
        self.page_next = page.next_offset
        self.page_len = len(page.items)
        self.consumed = 0
        self.more = bool(page.items) and page.has_more
        items = page.items
        if self.limit is not None:
            items = items[: self.limit - self.yielded]
        self.buffer = deque(items)
        if not self.more:
            self.finished = True
            return
        if self.limit is not None and self.yielded + len(self.buffer) >= self.limit:
            return  # the cap ends iteration within this page, so the cursor is never sent
        if page.next_offset is None:
            # Re-sending the previous cursor would return the same page forever.
            raise SerializationError("server reported has_more without a next_offset cursor")
        if page.next_offset == self.cursor:
            raise SerializationError(f"server returned the same cursor twice ({page.next_offset!r})")
        self.cursor = page.next_offset

    @property
    def has_more(self) -> bool:
        """Whether items may follow the last one handed out (True before the first request)."""
        return not self.started or self.consumed < self.page_len or self.more

    def known_next_cursor(self) -> tuple[bool, str | None]:
        """Return ``(True, resume cursor)`` if known without a request, else ``(False, None)``."""
        if not self.started:
            return True, self.cursor
        if self.consumed >= self.page_len:
            return True, self.page_next if self.more else None
        if self.consumed == 0:
            return True, self.page_cursor
        if self.probe is not None and self.probe[:2] == (self.page_cursor, self.consumed):
            return True, self.probe[2]
        return False, None

    def remember_probe(self, page: PageResult[T]) -> str | None:
        """Record the answer to "``consumed`` items after ``page_cursor``"; its cursor is the resume point."""
        cursor = page.next_offset if page.items and page.has_more else None
        self.probe = (self.page_cursor, self.consumed, cursor)
        return cursor


_MID_PAGE = (
    "next_cursor in the middle of a page needs a fetch function that takes a page size "
    "(build the iterator with page_size=)"
)


class PaginatedIterator(Iterator[T]):
    """A lazy, single-pass iterator over every item of a paginated list, which can be resumed.

    Nothing is requested until the first `next`; each further page is requested only when the previous one
    has been consumed. Call the list method again to iterate again, or pass `next_cursor` as ``after=`` to
    continue where this one stopped.

    Args:
        fetch_page: Requests the page after the given cursor (None for the first page). With ``page_size``,
            it also takes the number of items to ask for.
        limit: Cap on the total number of items yielded; 0 means no request at all.
        after: Cursor to start after.
        page_size: Items per request, when ``fetch_page`` takes a size: the last request under a cap then asks
            only for what is left of it, and `next_cursor` can be found in the middle of a page.

    Example:
        >>> first = repo.commits.list(amount=50)  # doctest: +SKIP
        >>> batch = list(first)  # doctest: +SKIP
        >>> rest = repo.commits.list(after=first.next_cursor) if first.has_more else None  # doctest: +SKIP

    """

    @overload
    def __init__(
        self,
        fetch_page: Callable[[str | None], PageResult[T]],
        *,
        limit: int | None = None,
        after: str | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        fetch_page: Callable[[str | None, int], PageResult[T]],
        *,
        limit: int | None = None,
        after: str | None = None,
        page_size: int,
    ) -> None: ...

    def __init__(
        self,
        fetch_page: Callable[..., PageResult[T]],
        *,
        limit: int | None = None,
        after: str | None = None,
        page_size: int | None = None,
    ) -> None:
        self._fetch_page = fetch_page
        self._sized = page_size is not None
        self._state: _Cursor[T] = _Cursor(limit, after, page_size)

    def __iter__(self) -> PaginatedIterator[T]:
        return self

    def __next__(self) -> T:
        state = self._state
        while True:
            if state.buffer:
                return state.take()
            if state.finished:
                raise StopIteration
            state.absorb(self._fetch(state.cursor, state.wire_size()))

    def iter_pages(self) -> Iterator[list[T]]:
        """Yield the remaining items a page at a time (the rest of a started page first).

        Shares the position with item iteration; the cap still applies.

        Yields:
            Non-empty lists of items, in order.

        """
        state = self._state
        while True:
            if state.buffer:
                yield state.take_page()
            elif state.finished:
                return
            else:
                state.absorb(self._fetch(state.cursor, state.wire_size()))

    @property
    def has_more(self) -> bool:
        """Whether items may follow the last one handed out (True before the first request)."""
        return self._state.has_more

    @property
    def next_cursor(self) -> str | None:
        """The cursor that resumes exactly after the last item handed out; None when nothing follows.

        Before the first item it is the ``after`` the iteration started from. At a page boundary (and at a
        cap, which the iterator aligns with one) it is the server's cursor; in the middle of a page it costs
        one small request for the server's cursor after the items already handed out.

        Raises:
            RuntimeError: In the middle of a page of an iterator whose fetch function takes no page size.

        """
        state = self._state
        known, cursor = state.known_next_cursor()
        if known:
            return cursor
        if not self._sized:
            raise RuntimeError(_MID_PAGE)
        return state.remember_probe(self._fetch(state.page_cursor, state.consumed))

    def _fetch(self, cursor: str | None, size: int) -> PageResult[T]:
        return self._fetch_page(cursor, size) if self._sized else self._fetch_page(cursor)

    def __repr__(self) -> str:
        return f"<PaginatedIterator yielded={self._state.yielded} finished={self._state.finished}>"


class AsyncPaginatedIterator(AsyncIterator[T]):
    """The ``async for`` counterpart of `PaginatedIterator` (same laziness, cap, stop rules and cursors).

    Args:
        fetch_page: Coroutine requesting the page after the given cursor (None for the first page). With
            ``page_size``, it also takes the number of items to ask for.
        limit: Cap on the total number of items yielded; 0 means no request at all.
        after: Cursor to start after.
        page_size: Items per request, when ``fetch_page`` takes a size (see `PaginatedIterator`).

    """

    @overload
    def __init__(
        self,
        fetch_page: Callable[[str | None], Awaitable[PageResult[T]]],
        *,
        limit: int | None = None,
        after: str | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        fetch_page: Callable[[str | None, int], Awaitable[PageResult[T]]],
        *,
        limit: int | None = None,
        after: str | None = None,
        page_size: int,
    ) -> None: ...

    def __init__(
        self,
        fetch_page: Callable[..., Awaitable[PageResult[T]]],
        *,
        limit: int | None = None,
        after: str | None = None,
        page_size: int | None = None,
    ) -> None:
        self._fetch_page = fetch_page
        self._sized = page_size is not None
        self._state: _Cursor[T] = _Cursor(limit, after, page_size)

    def __aiter__(self) -> AsyncPaginatedIterator[T]:
        return self

    async def __anext__(self) -> T:
        state = self._state
        while True:
            if state.buffer:
                return state.take()
            if state.finished:
                raise StopAsyncIteration
            state.absorb(await self._fetch(state.cursor, state.wire_size()))

    async def iter_pages(self) -> AsyncIterator[list[T]]:
        """Yield the remaining items a page at a time (``async for page in it.iter_pages()``).

        Yields:
            Non-empty lists of items, in order.

        """
        state = self._state
        while True:
            if state.buffer:
                yield state.take_page()
            elif state.finished:
                return
            else:
                state.absorb(await self._fetch(state.cursor, state.wire_size()))

    @property
    def has_more(self) -> bool:
        """Whether items may follow the last one handed out (True before the first request)."""
        return self._state.has_more

    @property
    def next_cursor(self) -> str | None:
        """The cursor that resumes exactly after the last item handed out, when known without a request.

        Known before the first item, at page boundaries and at a cap. In the middle of a page, await
        `resolve_next_cursor` instead.

        Raises:
            RuntimeError: In the middle of a page (a request is needed).

        """
        known, cursor = self._state.known_next_cursor()
        if not known:
            raise RuntimeError(
                "next_cursor in the middle of a page needs a request: await resolve_next_cursor()"
            )
        return cursor

    async def resolve_next_cursor(self) -> str | None:
        """Return `next_cursor`, making the one small request it needs in the middle of a page.

        Returns:
            The cursor that resumes exactly after the last item handed out; None when nothing follows.

        Raises:
            RuntimeError: In the middle of a page of an iterator whose fetch function takes no page size.

        """
        state = self._state
        known, cursor = state.known_next_cursor()
        if known:
            return cursor
        if not self._sized:
            raise RuntimeError(_MID_PAGE)
        return state.remember_probe(await self._fetch(state.page_cursor, state.consumed))

    async def _fetch(self, cursor: str | None, size: int) -> PageResult[T]:
        return await (self._fetch_page(cursor, size) if self._sized else self._fetch_page(cursor))

    def __repr__(self) -> str:
        return f"<AsyncPaginatedIterator yielded={self._state.yielded} finished={self._state.finished}>"
