"""Upload strategies against a mocked wire: selection, parallel multipart, retries, abort, 501 fallback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from tilde.core.errors import ServerError, TransportError
from tilde.data import Client, PutObjectResult, UploadRequest, _multipart
from tilde.data.hookspecs import hookimpl
from tilde.data.plugins import make_plugin_manager

ENDPOINT = "http://tilde.test"
REPO = f"{ENDPOINT}/api/v1/organizations/acme/repositories/data"
UPLOADS = "http://uploads.test"

SID = "5e551011-0000-4000-8000-000000000001"  # session ids are UUIDs


class FakeStore:
    """Just enough of the upload side of the wire to observe what the client sends."""

    def __init__(self, mock: respx.MockRouter) -> None:
        self.single_puts: list[bytes] = []
        self.parts: dict[int, bytes] = {}
        self.part_url_requests: list[int] = []
        self.part_put_attempts: dict[int, int] = {}
        self.finalized: list[dict[str, Any]] = []
        self.completed: list[dict[str, Any]] = []
        self.aborted = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_part: Callable[[int, int], int | None] = lambda number, attempt: None
        self.fail_url: Callable[[int, int], int | None] = lambda number, attempt: None
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()
        mock.put(f"{REPO}/object").mock(
            return_value=httpx.Response(200, json={"upload_url": f"{UPLOADS}/single", "upload_token": "tok"})
        )
        mock.put(f"{UPLOADS}/single").mock(side_effect=self._single_put)
        mock.post(f"{REPO}/object/finalize").mock(side_effect=self._finalize)
        self.initiate = mock.post(f"{REPO}/object/multipart").mock(
            return_value=httpx.Response(200, json={"upload_id": "up1", "upload_token": "mtok"})
        )
        mock.get(f"{REPO}/object/multipart/part").mock(side_effect=self._part_url)
        mock.put(url__startswith=f"{UPLOADS}/part/").mock(side_effect=self._part_put)
        mock.post(f"{REPO}/object/multipart/complete").mock(side_effect=self._complete)
        mock.delete(f"{REPO}/object/multipart").mock(side_effect=self._abort)

    def _single_put(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.single_puts.append(body)
        return httpx.Response(200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def _finalize(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.finalized.append(body)
        return httpx.Response(201, json={"path": request.url.params["path"], "etag": '"final"'})

    def _part_url(self, request: httpx.Request) -> httpx.Response:
        assert request.url.params["upload_id"] == "up1"
        assert request.url.params["upload_token"] == "mtok"
        number = int(request.url.params["part_number"])
        with self._lock:
            self.part_url_requests.append(number)
            attempt = self.part_url_requests.count(number)
        status = self.fail_url(number, attempt)
        if status is not None:
            return httpx.Response(
                status, headers={"Retry-After": "0"}, json={"message": "busy", "code": "busy"}
            )
        return httpx.Response(200, json={"upload_url": f"{UPLOADS}/part/{number}/{attempt}"})

    def _part_put(self, request: httpx.Request) -> httpx.Response:
        _, number_text, attempt_text = request.url.path.strip("/").split("/")
        number, attempt = int(number_text), int(attempt_text)
        with self._lock:
            self.part_put_attempts[number] = self.part_put_attempts.get(number, 0) + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                # Hold parts until enough are in flight, proving they are sent concurrently.
                self.gate.wait(timeout=10)
            status = self.fail_part(number, attempt)
            if status is not None:
                return httpx.Response(status)
            body = request.read()
            with self._lock:
                self.parts[number] = body
            return httpx.Response(200, headers={"ETag": f'"etag-{number}"'})
        finally:
            with self._lock:
                self.in_flight -= 1

    def _complete(self, request: httpx.Request) -> httpx.Response:
        self.completed.append(json.loads(request.content))
        return httpx.Response(201, json={"path": request.url.params["path"], "etag": '"whole"'})

    def _abort(self, request: httpx.Request) -> httpx.Response:
        assert request.url.params["upload_id"] == "up1"
        self.aborted += 1
        return httpx.Response(204)

    def assembled(self) -> bytes:
        return b"".join(self.parts[number] for number in sorted(self.parts))


def _small_client(**kwargs: Any) -> Client:
    settings: dict[str, Any] = {"upload_threshold": 100, "multipart_part_size": 10, "max_parts_in_flight": 3}
    settings.update(kwargs)
    return Client(endpoint_url=ENDPOINT, api_key="tuk-test", max_retries=0, **settings)


def _put(client: Client, data: Any, path: str = "a/b.bin") -> PutObjectResult:
    return client.repository("acme/data").attach(SID).objects.put(path, data)


def test_small_known_size_goes_through_one_presigned_put(mock: respx.MockRouter, client: Client) -> None:
    store = FakeStore(mock)
    result = _put(client, b"hello world")
    assert result == PutObjectResult(path="a/b.bin", etag='"final"')
    assert store.single_puts == [b"hello world"]
    assert not store.initiate.called
    (body,) = store.finalized
    assert body == {
        "upload_token": "tok",
        "content_type": "application/octet-stream",
        "checksum": hashlib.md5(b"hello world").hexdigest(),
        "size_bytes": 11,
    }
    put_request = next(call.request for call in mock.calls if call.request.url.host == "uploads.test")
    assert "authorization" not in put_request.headers


def test_large_upload_runs_parts_in_parallel_and_in_order(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    payload = bytes(range(256)) * 2  # 512 bytes -> 52 parts of 10
    with _small_client() as client:
        result = _put(client, payload)
    assert result.etag == '"whole"'
    assert store.assembled() == payload
    assert store.max_in_flight <= 3
    (body,) = store.completed
    assert body["size_bytes"] == len(payload)
    assert [part["part_number"] for part in body["parts"]] == list(range(1, 53))
    assert body["parts"][0]["etag"] == '"etag-1"'  # quotes kept, unlike finalize's checksum
    assert store.aborted == 0


def test_initiate_announces_the_part_size(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    with _small_client() as client:
        _put(client, b"y" * 125)
    (call,) = store.initiate.calls
    assert dict(call.request.url.params) == {"session_id": SID, "path": "a/b.bin", "part_size": "10"}
    # Every part but the last holds exactly the announced size; the hint goes on initiate only.
    assert [len(store.parts[n]) for n in sorted(store.parts)] == [10] * 12 + [5]
    others = [c.request for c in mock.calls if not c.request.url.path.endswith("/object/multipart")]
    assert others
    assert all("part_size" not in request.url.params for request in others)


def test_parts_really_overlap(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    store.gate = threading.Event()

    def open_gate_when_three_in_flight(number: int, attempt: int) -> None:
        return None

    store.fail_part = open_gate_when_three_in_flight
    watcher_done = threading.Event()

    def watch() -> None:
        while not watcher_done.is_set():
            if store.in_flight >= 3:
                assert store.gate is not None
                store.gate.set()
                return
            watcher_done.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with _small_client() as client:
            _put(client, b"x" * 200)
    finally:
        watcher_done.set()
        watcher.join()
    assert store.max_in_flight == 3
    assert store.assembled() == b"x" * 200


def test_unknown_size_uses_multipart_even_when_small(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    with _small_client() as client:
        _put(client, iter([b"abc", b"defghijklmno"]))
    assert store.assembled() == b"abcdefghijklmno"
    assert store.completed[0]["size_bytes"] == 15


def test_empty_stream_completes_with_no_parts(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    with _small_client() as client:
        _put(client, iter([]))
    assert store.completed[0]["parts"] == []
    assert store.completed[0]["size_bytes"] == 0


def test_expired_part_url_is_replaced_and_retried(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    # The first URL handed out for part 2 answers 403 (expired); the fresh one works.
    store.fail_part = lambda number, attempt: 403 if (number, attempt) == (2, 1) else None
    with _small_client() as client:
        client.upload_settings = type(client.upload_settings)(
            threshold=0, part_size=10, max_parts_in_flight=3, retry_backoff=0
        )
        _put(client, b"y" * 35)
    assert store.part_url_requests.count(2) == 2
    assert store.part_put_attempts[2] == 2
    assert store.assembled() == b"y" * 35
    assert store.aborted == 0


def test_a_part_that_keeps_failing_aborts_the_upload(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    store.fail_part = lambda number, attempt: 500 if number == 4 else None
    with _small_client() as client:
        client.upload_settings = type(client.upload_settings)(
            threshold=100, part_size=10, max_parts_in_flight=2, part_attempts=3, retry_backoff=0
        )
        with pytest.raises(TransportError):
            _put(client, b"z" * 120)
    assert store.part_put_attempts[4] == 3
    assert store.aborted == 1
    assert store.completed == []


def test_501_falls_back_to_single_put_and_is_remembered(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    store.initiate.mock(return_value=httpx.Response(501, json={"message": "no multipart", "code": "x"}))
    with _small_client() as client:
        _put(client, b"q" * 150)
        assert client._multipart_unsupported is True
        assert store.single_puts == [b"q" * 150]
        assert store.initiate.call_count == 1
        # Unknown size, too, now goes straight to the single PUT (streamed).
        _put(client, iter([b"r" * 40, b"s" * 40]))
        assert store.initiate.call_count == 1
    assert store.single_puts[1] == b"r" * 40 + b"s" * 40
    assert store.finalized[1]["size_bytes"] == 80


def test_501_on_complete_aborts_then_falls_back(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    mock.post(f"{REPO}/object/multipart/complete").mock(return_value=httpx.Response(501))
    with _small_client() as client:
        _put(client, io.BytesIO(b"w" * 150))
    assert store.aborted == 1
    assert store.single_puts == [b"w" * 150]


def test_other_server_errors_on_initiate_propagate(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    store.initiate.mock(return_value=httpx.Response(503))
    with _small_client() as client, pytest.raises(ServerError):
        _put(client, b"q" * 150)
    assert store.single_puts == []


def test_an_overloaded_part_url_call_costs_a_try_not_the_upload(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    # The client makes no retries of its own here (max_retries=0): the part's tries absorb the 503s.
    store.fail_url = lambda number, attempt: 503 if number == 2 and attempt <= 2 else None
    with _small_client() as client:
        client.upload_settings = type(client.upload_settings)(threshold=0, part_size=10, retry_backoff=0)
        _put(client, b"u" * 35)
    assert store.part_url_requests.count(2) == 3
    assert store.part_put_attempts[2] == 1
    assert store.assembled() == b"u" * 35


def test_memory_is_bounded_by_parts_in_flight(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    produced = 0
    held_max = 0

    def chunks() -> Iterator[bytes]:
        nonlocal produced, held_max
        for _ in range(40):
            produced += 10
            with store._lock:
                sent = sum(len(part) for part in store.parts.values())
            held_max = max(held_max, produced - sent)
            yield b"m" * 10

    with _small_client(max_parts_in_flight=2) as client:
        _put(client, chunks())
    # At most two parts in flight plus the chunk being read.
    assert held_max <= 3 * 10


def test_iterator_parts_in_flight_are_bounded_by_the_buffer_budget(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    store.gate = threading.Event()
    threading.Timer(0.5, store.gate.set).start()
    with _small_client(max_parts_in_flight=8) as client:
        client.upload_settings = type(client.upload_settings)(
            threshold=100, part_size=10, max_parts_in_flight=8, max_buffered_bytes=25
        )
        _put(client, iter([b"n" * 10] * 12))
    # 25 bytes of budget hold two 10-byte parts: never more than two wait in memory to be sent.
    assert store.max_in_flight == 2
    assert store.assembled() == b"n" * 120


def test_file_parts_are_read_at_their_offsets_when_sent(mock: respx.MockRouter, tmp_path: Any) -> None:
    store = FakeStore(mock)
    data = bytes(range(256)) * 4
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    reads: list[tuple[int, int]] = []
    original = os.pread

    def spying_pread(fd: int, size: int, offset: int) -> bytes:
        reads.append((offset, size))
        return original(fd, size, offset)

    store.fail_part = lambda number, attempt: 503 if (number, attempt) == (3, 1) else None
    with _small_client(max_parts_in_flight=3) as client:
        client.upload_settings = type(client.upload_settings)(
            threshold=100, part_size=100, max_parts_in_flight=3, retry_backoff=0
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "pread", spying_pread)
            _put(client, source)
    assert store.assembled() == data
    # Part 3 (bytes 200-299) was read from the file twice: once per try, never kept between them.
    assert reads.count((200, 100)) == 2
    assert sorted(offset for offset, size in reads if size and offset != 200) == [
        n * 100 for n in range(11) if n != 2
    ]


def test_third_party_strategy_with_higher_priority_takes_over(mock: respx.MockRouter) -> None:
    store = FakeStore(mock)
    seen: list[str] = []

    class Recorder:
        name = "recorder"
        priority = 10

        def accepts(self, upload: UploadRequest) -> bool:
            return upload.path.endswith(".rec")

        def upload(self, upload: UploadRequest) -> PutObjectResult:
            seen.append(upload.path)
            return PutObjectResult(path=upload.path, etag='"rec"')

    class Plugin:
        @hookimpl
        def tilde_register_upload_strategies(self, register: Callable[[Any], None]) -> None:
            register(Recorder())

    manager = make_plugin_manager(load_entry_points=False)
    manager.register(Plugin())
    with Client(endpoint_url=ENDPOINT, api_key="tuk-test", plugin_manager=manager) as client:
        assert _put(client, b"data", "x.rec").etag == '"rec"'
        assert _put(client, b"data", "x.bin").etag == '"final"'
    assert seen == ["x.rec"]
    assert store.single_puts == [b"data"]


def test_plain_core_plugin_manager_gets_the_builtin_strategies(mock: respx.MockRouter) -> None:
    from tilde.core.plugins import make_plugin_manager as core_manager

    store = FakeStore(mock)
    with Client(
        endpoint_url=ENDPOINT, api_key="tuk-test", plugin_manager=core_manager(load_entry_points=False)
    ) as client:
        _put(client, b"abc")
    assert store.single_puts == [b"abc"]


def test_invalid_upload_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="part size"):
        Client(endpoint_url=ENDPOINT, api_key="k", multipart_part_size=0)
    with pytest.raises(ValueError, match="in flight"):
        Client(endpoint_url=ENDPOINT, api_key="k", max_parts_in_flight=0)


class _Consuming(httpx.BaseTransport):
    """Hands each request to ``handler`` unread (`httpx.MockTransport` gathers the whole body first)."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self._handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._handler(request)


class RetainingTransport:
    """A stand-in client whose upload HTTP client keeps every request it sent (and its body), as httpx does.

    httpx frees a finished response, and the request (with its body) it references, only in a cyclic garbage
    collection; until one runs, whatever was passed as ``content`` stays referenced.
    """

    def __init__(self) -> None:
        self.retained: list[Any] = []
        self._multipart_unsupported = False
        self._upload_http = httpx.Client(transport=_Consuming(self._keep))

    def _post_json(self, path: str, *, params: Any = None, json: Any = None) -> dict[str, Any]:
        return {"upload_id": "u", "upload_token": "t", "path": params["path"], "etag": '"e"'}

    def _get_json(self, path: str, *, params: Any = None) -> dict[str, Any]:
        return {"upload_url": "http://uploads.test/p"}

    def _keep(self, request: httpx.Request) -> httpx.Response:
        # What httpx keeps alive until a cyclic collection: the request, and the body it was given.
        self.retained.append(request)
        for _ in request.stream:  # type: ignore[union-attr]
            pass  # consumed as a socket would, not gathered like request.read()
        return httpx.Response(200, headers={"ETag": '"p"'})

    def _delete(self, path: str, *, params: Any = None) -> None:
        return None


def test_sent_parts_are_not_kept_alive_by_the_transport() -> None:
    from tilde.data.upload_source import UploadSource
    from tilde.data.upload_strategies import MultipartUploadStrategy, UploadSettings

    part = 1024 * 1024
    transport = RetainingTransport()
    request = UploadRequest(
        client=transport,  # type: ignore[arg-type]
        repository_path="/organizations/acme/repositories/data",
        session_id=SID,
        path="big",
        source=UploadSource(b"k" * part for _ in range(40)),
        settings=UploadSettings(threshold=0, part_size=part, max_parts_in_flight=1),
    )
    tracemalloc.start()
    try:
        with transport._upload_http:
            result = MultipartUploadStrategy().upload(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.etag == '"e"'
    assert len(transport.retained) == 40
    # One part being read, one in flight, and slack; 40 retained parts would be 40 MiB.
    assert peak < 8 * part


@pytest.mark.parametrize(("hint", "expected"), [(1, 1), (2, 2), (5, 3), (0, 3), (True, 3), ("1", 3)])
def test_the_server_can_ask_for_fewer_parts_at_once(
    mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, hint: object, expected: int
) -> None:
    store = FakeStore(mock)
    store.initiate.mock(
        return_value=httpx.Response(
            200, json={"upload_id": "up1", "upload_token": "mtok", "parts_in_flight": hint}
        )
    )
    pools: list[int] = []
    real = _multipart.ThreadPoolExecutor

    def pool(max_workers: int, **kwargs: Any) -> Any:
        pools.append(max_workers)
        return real(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(_multipart, "ThreadPoolExecutor", pool)
    with _small_client() as client:
        _put(client, b"x" * 200)
    # Fewer than the client's own setting (3) is followed; anything else is ignored.
    assert pools == [expected]
    assert store.max_in_flight <= expected
    assert store.assembled() == b"x" * 200
