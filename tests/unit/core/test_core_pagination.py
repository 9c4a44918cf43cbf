from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from core_helpers import BASE, Recorder

from tilde.core import Client, PageResult, PaginatedIterator, SerializationError
from tilde.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, parse_page

MakeClient = Callable[..., Client]


def page(items: list[Any], has_more: bool | None = None, cursor: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"results": [{"id": item} for item in items]}
    if has_more is not None:
        body["pagination"] = {"has_more": has_more, "next_offset": cursor, "max_per_page": 1000}
    return httpx.Response(200, json=body)


def ids(item: dict[str, Any]) -> Any:
    return item["id"]


def params(recorder: Recorder) -> list[dict[str, str]]:
    return [dict(request.url.params) for request in recorder.requests]


def test_walks_every_page_with_cursors(make_client: MakeClient) -> None:
    recorder = Recorder(page([1, 2], True, "c2"), page([3, 4], True, "c4"), page([5], False, None))
    iterator = make_client(recorder)._paginate("/things", ids, params={"prefix": "p/", "skip": None})
    assert list(iterator) == [1, 2, 3, 4, 5]
    assert params(recorder) == [
        {"prefix": "p/", "amount": "100"},
        {"prefix": "p/", "amount": "100", "after": "c2"},
        {"prefix": "p/", "amount": "100", "after": "c4"},
    ]
    assert all(request.url.path == "/api/v1/things" for request in recorder.requests)


def test_is_lazy_and_single_pass(make_client: MakeClient) -> None:
    recorder = Recorder(page([1, 2], True, "c"), page([3], False))
    iterator = make_client(recorder)._paginate("/things", ids)
    assert recorder.requests == []
    assert iter(iterator) is iterator
    assert next(iterator) == 1
    assert next(iterator) == 2
    assert len(recorder.requests) == 1  # the next page only when the buffer is empty
    assert list(iterator) == [3]
    assert list(iterator) == []
    assert len(recorder.requests) == 2


def test_amount_caps_total_items_and_requests(make_client: MakeClient) -> None:
    recorder = Recorder(page([1, 2, 3], True, "c3"), page([4, 5, 6], True, "c6"))
    assert list(make_client(recorder)._paginate("/t", ids, amount=4, page_size=3)) == [1, 2, 3, 4]
    assert len(recorder.requests) == 2
    assert params(recorder)[0]["amount"] == "3"


def test_amount_reached_within_a_page_needs_no_cursor(make_client: MakeClient) -> None:
    recorder = Recorder(page([1, 2, 3], True, None))
    assert list(make_client(recorder)._paginate("/t", ids, amount=2)) == [1, 2]


def test_amount_zero_makes_no_request(make_client: MakeClient) -> None:
    recorder = Recorder(page([1]))
    assert list(make_client(recorder)._paginate("/t", ids, amount=0)) == []
    assert list(make_client(recorder)._list_once("/t", ids, amount=0)) == []
    assert recorder.requests == []


def test_after_sets_the_first_cursor(make_client: MakeClient) -> None:
    recorder = Recorder(page([7], False))
    assert list(make_client(recorder)._paginate("/t", ids, after="x/6", page_size=1000)) == [7]
    assert params(recorder) == [{"amount": "1000", "after": "x/6"}]


def test_stops_on_empty_page_even_if_has_more(make_client: MakeClient) -> None:
    recorder = Recorder(page([1], True, "c1"), page([], True, "c1-again"))
    assert list(make_client(recorder)._paginate("/t", ids)) == [1]
    assert len(recorder.requests) == 2


def test_missing_pagination_block_means_last_page(make_client: MakeClient) -> None:
    recorder = Recorder(page([1, 2]))
    assert list(make_client(recorder)._paginate("/t", ids)) == [1, 2]
    assert len(recorder.requests) == 1


def test_has_more_with_null_cursor_is_an_error_not_a_loop(make_client: MakeClient) -> None:
    recorder = Recorder(page([1], True, None))
    iterator = make_client(recorder)._paginate("/t", ids)
    with pytest.raises(SerializationError, match="next_offset"):
        list(iterator)
    assert len(recorder.requests) == 1


def test_repeated_cursor_is_an_error_not_a_loop(make_client: MakeClient) -> None:
    recorder = Recorder(page([1], True, "same"), page([2], True, "same"))
    with pytest.raises(SerializationError, match="same cursor"):
        list(make_client(recorder)._paginate("/t", ids))
    assert len(recorder.requests) == 2


@pytest.mark.parametrize("bad", [0, -1, MAX_PAGE_SIZE + 1, 2.5, "10", True])
def test_bad_page_size_is_rejected_before_any_request(make_client: MakeClient, bad: object) -> None:
    recorder = Recorder(page([1]))
    with pytest.raises(ValueError, match="page_size"):
        make_client(recorder)._paginate("/t", ids, page_size=bad)  # type: ignore[arg-type]
    assert recorder.requests == []


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_bad_amount_is_rejected_before_any_request(make_client: MakeClient, bad: object) -> None:
    recorder = Recorder(page([1]))
    client = make_client(recorder)
    with pytest.raises(ValueError, match="amount"):
        client._paginate("/t", ids, amount=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="amount"):
        client._list_once("/t", ids, amount=bad)  # type: ignore[arg-type]
    assert recorder.requests == []


def test_page_size_bounds_are_accepted(make_client: MakeClient) -> None:
    recorder = Recorder(page([1], False))
    list(make_client(recorder)._paginate("/t", ids, page_size=1))
    list(make_client(recorder)._paginate("/t", ids, page_size=MAX_PAGE_SIZE))
    assert [p["amount"] for p in params(recorder)] == ["1", "1000"]
    assert DEFAULT_PAGE_SIZE == 100


def test_list_once_sends_no_paging_params_and_ignores_has_more(make_client: MakeClient) -> None:
    recorder = Recorder(page([1, 2, 3], True, "c"))
    client = make_client(recorder)
    assert list(client._list_once("/orgs", ids, params={"principal_type": "user"})) == [1, 2, 3]
    assert list(client._list_once("/orgs", ids, amount=2)) == [1, 2]
    assert params(recorder) == [{"principal_type": "user"}, {}]


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"results": {"a": 1}}',
        b'{"results": [1, 2]}',
        b"not json",
    ],
)
def test_malformed_pages(make_client: MakeClient, body: bytes) -> None:
    recorder = Recorder(httpx.Response(200, content=body))
    with pytest.raises(SerializationError):
        list(make_client(recorder)._paginate("/t", ids))


def test_errors_propagate_from_a_later_page(make_client: MakeClient) -> None:
    recorder = Recorder(page([1], True, "c"), httpx.Response(403, json={"message": "denied"}))
    iterator = make_client(recorder, max_retries=0)._paginate("/t", ids)
    assert next(iterator) == 1
    with pytest.raises(Exception, match="denied"):
        next(iterator)


def test_parse_page_defaults() -> None:
    result = parse_page({"results": None}, ids)
    assert result == PageResult([], has_more=False, next_offset=None, max_per_page=None)
    result = parse_page(
        {"results": [{"id": 1}], "pagination": {"has_more": True, "next_offset": 5, "max_per_page": 1000}},
        ids,
    )
    assert result == PageResult([1], has_more=True, next_offset="5", max_per_page=1000)


def test_iterator_over_a_plain_fetch_function() -> None:
    pages = {None: PageResult([1, 2], True, "b"), "b": PageResult([3], False)}
    seen: list[str | None] = []

    def fetch(cursor: str | None) -> PageResult[int]:
        seen.append(cursor)
        return pages[cursor]

    assert list(PaginatedIterator(fetch)) == [1, 2, 3]
    assert seen == [None, "b"]
    assert list(PaginatedIterator(fetch, limit=1)) == [1]
    assert "PaginatedIterator" in repr(PaginatedIterator(fetch))


def test_items_are_parsed_with_the_callers_function(make_client: MakeClient) -> None:
    recorder = Recorder(page(["a"], False))
    assert list(make_client(recorder)._paginate("/t", lambda d: ("parsed", d["id"]))) == [("parsed", "a")]
    assert BASE.endswith("/api/v1")
