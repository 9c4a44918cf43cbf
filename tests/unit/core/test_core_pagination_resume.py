"""Resuming paginated lists: ``next_cursor``, ``has_more`` and ``iter_pages`` (sync and async)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from core_helpers import Recorder

from tilde.core import AsyncClient, AsyncPaginatedIterator, Client, PageResult, PaginatedIterator

MakeClient = Callable[..., Client]
ITEMS = [f"{n:02}" for n in range(1, 11)]


def listing(request: httpx.Request) -> httpx.Response:
    """A server listing ITEMS in order; the cursor is the last id sent, ``after`` is exclusive."""
    amount = int(request.url.params["amount"])
    after = request.url.params.get("after", "")
    rest = [item for item in ITEMS if item > after]
    page = rest[:amount]
    more = len(rest) > amount
    return httpx.Response(
        200,
        json={
            "results": [{"id": item} for item in page],
            "pagination": {"has_more": more, "next_offset": page[-1] if more else None},
        },
    )


def ids(item: dict[str, Any]) -> str:
    return str(item["id"])


def wire(recorder: Recorder) -> list[tuple[str, str | None]]:
    return [(r.url.params["amount"], r.url.params.get("after")) for r in recorder.requests]


def test_a_cap_inside_a_page_resumes_exactly(make_client: MakeClient) -> None:
    recorder = Recorder(listing)
    client = make_client(recorder)
    first = client._paginate("/t", ids, amount=3, page_size=5)
    assert (first.has_more, first.next_cursor) == (True, None)
    assert list(first) == ITEMS[:3]
    assert wire(recorder) == [("3", None)]  # the cap shrinks the request: no item fetched and dropped
    assert (first.has_more, first.next_cursor) == (True, "03")
    rest = client._paginate("/t", ids, page_size=4, after=first.next_cursor)
    assert list(rest) == ITEMS[3:]
    assert (rest.has_more, rest.next_cursor) == (False, None)
    assert len(recorder.requests) == 1 + 2


def test_a_cap_across_pages_asks_only_for_what_is_left(make_client: MakeClient) -> None:
    recorder = Recorder(listing)
    iterator = make_client(recorder)._paginate("/t", ids, amount=7, page_size=3)
    assert list(iterator) == ITEMS[:7]
    assert wire(recorder) == [("3", None), ("3", "03"), ("1", "06")]
    assert iterator.next_cursor == "07"


def test_stopping_in_the_middle_of_a_page_costs_one_small_request(make_client: MakeClient) -> None:
    recorder = Recorder(listing)
    client = make_client(recorder)
    iterator = client._paginate("/t", ids, page_size=4)
    taken = [next(iterator) for _ in range(6)]
    assert taken == ITEMS[:6]
    assert iterator.has_more
    assert iterator.next_cursor == "06"
    assert iterator.next_cursor == "06"  # remembered
    assert wire(recorder) == [("4", None), ("4", "04"), ("2", "04")]
    assert list(iterator) == ITEMS[6:]  # the probe did not disturb the iteration
    assert list(client._paginate("/t", ids, after="06")) == ITEMS[6:]


def test_iter_pages_shares_the_position(make_client: MakeClient) -> None:
    iterator = make_client(Recorder(listing))._paginate("/t", ids, page_size=4, amount=9)
    assert next(iterator) == "01"
    assert list(iterator.iter_pages()) == [ITEMS[1:4], ITEMS[4:8], ITEMS[8:9]]
    assert iterator.next_cursor == "09"
    assert iterator.has_more
    assert list(iterator) == []


def test_an_exhausted_listing_has_no_cursor(make_client: MakeClient) -> None:
    iterator = make_client(Recorder(listing))._paginate("/t", ids)
    assert list(iterator.iter_pages()) == [ITEMS]
    assert (iterator.has_more, iterator.next_cursor) == (False, None)


def test_a_plain_fetch_function_knows_cursors_at_page_boundaries_only() -> None:
    pages = {None: PageResult([1, 2], True, "b"), "b": PageResult([3], False)}

    def fetch(cursor: str | None) -> PageResult[int]:
        return pages[cursor]

    iterator = PaginatedIterator(fetch, after=None)
    assert next(iterator) == 1
    with pytest.raises(RuntimeError, match="page_size"):
        _ = iterator.next_cursor
    assert next(iterator) == 2
    assert iterator.next_cursor == "b"
    assert list(iterator) == [3]
    assert iterator.next_cursor is None


def test_async_iterator_resumes_the_same_way() -> None:
    async def respond(request: httpx.Request) -> httpx.Response:
        return listing(request)

    async def scenario() -> tuple[list[str], list[list[str]], str | None, list[str]]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(respond))
        client = AsyncClient(endpoint_url="http://tilde.test", api_key="tuk-x", http_client=http)
        try:
            first = client._paginate("/t", ids, page_size=4)
            assert isinstance(first, AsyncPaginatedIterator)
            head = [await first.__anext__() for _ in range(2)]
            with pytest.raises(RuntimeError, match="resolve_next_cursor"):
                _ = first.next_cursor
            cursor = await first.resolve_next_cursor()
            pages = [page async for page in first.iter_pages()]
            resumed = [item async for item in client._paginate("/t", ids, after=cursor, amount=3)]
            return head, pages, cursor, resumed
        finally:
            await client.aclose()
            await http.aclose()

    head, pages, cursor, resumed = asyncio.run(scenario())
    assert head == ITEMS[:2]
    assert pages == [ITEMS[2:4], ITEMS[4:8], ITEMS[8:]]
    assert cursor == "02"
    assert resumed == ITEMS[2:5]
