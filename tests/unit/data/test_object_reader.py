"""`ObjectReader` corner cases a real server does not show (respx): what a seek costs, odd headers."""

from __future__ import annotations

import io

import httpx
import pytest
import respx

from tilde.core.errors import APIError
from tilde.data import Client, ObjectReader
from tilde.data.object_reader import SKIP_LIMIT

OBJECT = "http://tilde.test/api/v1/organizations/acme/repositories/data/object"
DATA = bytes(range(256)) * 4096  # 1 MiB

SID = "5e551011-0000-4000-8000-000000000001"  # session ids are UUIDs


def _ranged(request: httpx.Request) -> httpx.Response:
    """Answer like a range-aware blob store, in 64 KiB network chunks."""
    header = request.headers.get("range")
    start, end = 0, len(DATA) - 1
    if header:
        first, _, last = header.removeprefix("bytes=").partition("-")
        start, end = int(first), int(last) if last else len(DATA) - 1
        if start >= len(DATA):
            return httpx.Response(416, json={"message": "unsatisfiable"})
    body = DATA[start : end + 1]
    headers = {"ETag": '"v1"'}
    if header:
        headers["Content-Range"] = f"bytes {start}-{end}/{len(DATA)}"
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    return httpx.Response(206 if header else 200, headers=headers, content=iter(chunks))


def _reader(client: Client, **kwargs: object) -> ObjectReader:
    return client.repository("acme/data").attach(SID).objects.get("p", **kwargs)  # type: ignore[arg-type]


def test_short_forward_seeks_reuse_the_stream_long_ones_send_a_range(
    mock: respx.MockRouter, client: Client
) -> None:
    route = mock.get(OBJECT).mock(side_effect=_ranged)
    reader = _reader(client, cache=False)
    assert reader.read(10) == DATA[:10]
    reader.seek(SKIP_LIMIT // 2, io.SEEK_CUR)
    assert reader.read(4) == DATA[10 + SKIP_LIMIT // 2 : 14 + SKIP_LIMIT // 2]
    assert route.call_count == 1
    reader.seek(SKIP_LIMIT * 3)
    assert reader.read(4) == DATA[SKIP_LIMIT * 3 : SKIP_LIMIT * 3 + 4]
    assert route.call_count == 2
    assert route.calls.last.request.headers["Range"] == f"bytes={SKIP_LIMIT * 3}-"
    reader.seek(0)
    assert reader.read(2) == DATA[:2]
    assert "Range" not in route.calls.last.request.headers  # back at the start: a plain GET
    assert reader.seek(0, io.SEEK_END) == len(DATA)  # known from Content-Range: no HEAD
    assert all(call.request.method == "GET" for call in route.calls)
    reader.close()


def test_size_without_headers_is_learnt_at_the_end(mock: respx.MockRouter, client: Client) -> None:
    def chunked(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"abc", b"def"]))  # no Content-Length

    route = mock.get(OBJECT).mock(side_effect=chunked)
    reader = _reader(client)
    assert reader.read(100) == b"abcdef"
    assert reader.seek(-2, io.SEEK_END) == 4
    assert route.call_count == 1
    assert reader.read() == b"ef"
    reader.close()


def test_seek_end_without_a_reported_size_is_unsupported(mock: respx.MockRouter, client: Client) -> None:
    mock.head(OBJECT).mock(return_value=httpx.Response(200, headers={"Content-Length": "x"}))
    with pytest.raises(io.UnsupportedOperation, match="size"):
        _reader(client).seek(0, io.SEEK_END)


def test_unsatisfiable_first_range_still_raises(mock: respx.MockRouter, client: Client) -> None:
    mock.get(OBJECT).mock(side_effect=_ranged)
    reader = _reader(client, byte_range=(len(DATA) + 10, None))
    with pytest.raises(APIError) as caught:
        reader.read(1)
    assert caught.value.status_code == 416


def test_a_range_ignoring_server_is_cut_to_the_window(mock: respx.MockRouter, client: Client) -> None:
    mock.get(OBJECT).mock(return_value=httpx.Response(200, content=b"0123456789"))
    reader = _reader(client, byte_range=(2, 5))
    assert reader.read() == b"2345"
    assert reader.seek(0, io.SEEK_END) == 4
    reader.close()


def test_lines_longer_than_a_chunk(mock: respx.MockRouter, client: Client) -> None:
    line = b"x" * 200_000 + b"\n"
    mock.get(OBJECT).mock(
        return_value=httpx.Response(200, content=iter([line[:1000], line[1000:] + line * 2, b"tail"]))
    )
    with _reader(client) as reader:
        assert list(reader) == [line, line, line, b"tail"]
