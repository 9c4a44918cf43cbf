"""AsyncClient parity: the same request core, driven with awaits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import httpx
import pytest
import respx
from core_helpers import BASE, ENDPOINT

from tilde.core import (
    APIError,
    AsyncClient,
    AsyncPaginatedIterator,
    ConfigurationError,
    NotFoundError,
    SandboxCredentialsProvider,
    SerializationError,
    ServerError,
    TransportError,
)
from tilde.core._base import sdk_version

T = TypeVar("T")
AsyncHandler = Callable[[httpx.Request], httpx.Response]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class AsyncRecorder:
    def __init__(self, *steps: httpx.Response | Exception | AsyncHandler) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        await request.aread()
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)


def make(recorder: AsyncRecorder, sleeps: list[float] | None = None, **kwargs: Any) -> AsyncClient:
    kwargs.setdefault("endpoint_url", ENDPOINT)
    kwargs.setdefault("api_key", "tuk-secret")
    client = AsyncClient(http_client=httpx.AsyncClient(transport=httpx.MockTransport(recorder)), **kwargs)

    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    client._sleep = fake_sleep
    return client


async def finish(client: AsyncClient) -> None:
    await client.aclose()
    await client._http.aclose()


def test_headers_and_json() -> None:
    recorder = AsyncRecorder(httpx.Response(200, json={"a": 1}))

    async def scenario() -> dict[str, Any]:
        client = make(recorder, extra_user_agent="suffix/1")
        try:
            return await client._get_json("/organizations", params={"skip": None})
        finally:
            await finish(client)

    assert run(scenario()) == {"a": 1}
    request = recorder.requests[0]
    assert str(request.url) == f"{BASE}/organizations"
    assert request.headers["Authorization"] == "Bearer tuk-secret"
    assert request.headers["User-Agent"] == f"tilde-python-sdk/{sdk_version()} suffix/1"


def test_retries_with_fake_sleep_and_no_post_retry() -> None:
    sleeps: list[float] = []
    recorder = AsyncRecorder(httpx.Response(503, headers={"Retry-After": "2"}), httpx.Response(200, json={}))
    post_recorder = AsyncRecorder(httpx.Response(503), httpx.Response(200, json={}))

    async def scenario() -> None:
        client = make(recorder, sleeps)
        post_client = make(post_recorder, sleeps)
        try:
            assert await client._get_json("/x") == {}
            with pytest.raises(ServerError):
                await post_client._post_json("/x", json={})
        finally:
            await finish(client)
            await finish(post_client)

    run(scenario())
    assert sleeps == [2.0]
    assert len(recorder.requests) == 2
    assert len(post_recorder.requests) == 1


def test_connect_errors_retried_then_transport_error() -> None:
    sleeps: list[float] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    recorder = AsyncRecorder(refuse)

    async def scenario() -> None:
        client = make(recorder, sleeps, max_retries=1)
        try:
            with pytest.raises(TransportError, match="refused"):
                await client._request("POST", "/x")
        finally:
            await finish(client)

    run(scenario())
    assert len(recorder.requests) == 2
    assert len(sleeps) == 1


def test_error_mapping_and_write_helpers() -> None:
    recorder = AsyncRecorder(
        httpx.Response(404, json={"message": "nope", "code": "not_found", "request_id": "r"}),
        httpx.Response(204),
        httpx.Response(200, json={"key": "k"}),
        httpx.Response(200, json={"enabled": True}),
        httpx.Response(204),
        httpx.Response(200, headers={"ETag": '"e"'}),
        httpx.Response(200, content=b"[]"),
    )

    async def scenario() -> None:
        client = make(recorder)
        try:
            with pytest.raises(NotFoundError) as info:
                await client._get("/missing")
            assert str(info.value) == f"GET {BASE}/missing -> 404: nope [code=not_found request_id=r]"
            assert await client._post_json("/a") is None
            assert await client._put_json("/b", json={"value": "v"}) == {"key": "k"}
            assert await client._patch_json("/c", json={"enabled": True}) == {"enabled": True}
            assert await client._delete("/d") is None
            assert (await client._head("/e")).headers["ETag"] == '"e"'
            with pytest.raises(SerializationError):
                await client._get_json("/f")
        finally:
            await finish(client)

    run(scenario())
    assert [r.method for r in recorder.requests] == ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "GET"]


def test_stream_and_stream_errors() -> None:
    recorder = AsyncRecorder(
        httpx.Response(200, content=b"a\nb\n"), httpx.Response(410, json={"message": "gone"})
    )

    async def scenario() -> list[str]:
        client = make(recorder)
        try:
            async with client._stream("GET", "/logs") as response:
                lines = [line async for line in response.aiter_lines()]
            with pytest.raises(APIError, match="gone"):
                async with client._stream("GET", "/logs"):
                    pytest.fail("must not yield")
            return lines
        finally:
            await finish(client)

    assert run(scenario()) == ["a", "b"]


def test_stream_read_failure_is_transport_error() -> None:
    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"partial"
            raise httpx.ReadError("reset")

    recorder = AsyncRecorder(httpx.Response(200, stream=Broken()))

    async def scenario() -> None:
        client = make(recorder)
        try:
            async with client._stream("GET", "/big") as response:
                with pytest.raises(TransportError, match="reset"):
                    await response.aread()
        finally:
            await finish(client)

    run(scenario())


def test_presigned_put() -> None:
    recorder = AsyncRecorder(httpx.Response(200, headers={"ETag": '"m"'}), httpx.Response(500))

    async def scenario() -> None:
        client = make(recorder, max_retries=0)
        try:
            response = await client._presigned_put("https://store.test/u?upload_token=t", b"xyz")
            assert response.headers["ETag"] == '"m"'
            with pytest.raises(TransportError, match="500"):
                await client._presigned_put("https://store.test/u", b"xyz")
        finally:
            await finish(client)

    run(scenario())
    assert "Authorization" not in recorder.requests[0].headers
    assert recorder.requests[0].content == b"xyz"


def page(items: list[int], has_more: bool, cursor: str | None) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "results": [{"id": i} for i in items],
            "pagination": {"has_more": has_more, "next_offset": cursor},
        },
    )


def test_async_pagination() -> None:
    recorder = AsyncRecorder(page([1, 2], True, "c2"), page([3], False, None))
    bad = AsyncRecorder(page([1], True, None))
    once = AsyncRecorder(page([1, 2, 3], True, "c"))

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        client = make(recorder)
        bad_client = make(bad)
        once_client = make(once)
        try:
            iterator = client._paginate("/t", lambda d: int(d["id"]), after="c0", page_size=2)
            assert isinstance(iterator, AsyncPaginatedIterator)
            assert recorder.requests == []
            items = [item async for item in iterator]
            assert [item async for item in iterator] == []
            with pytest.raises(SerializationError):
                _ = [item async for item in bad_client._paginate("/t", lambda d: int(d["id"]))]
            capped = [item async for item in once_client._list_once("/t", lambda d: int(d["id"]), amount=2)]
            none = [item async for item in once_client._paginate("/t", lambda d: int(d["id"]), amount=0)]
            return items, capped, none
        finally:
            await finish(client)
            await finish(bad_client)
            await finish(once_client)

    assert run(scenario()) == ([1, 2, 3], [1, 2], [])
    assert [dict(r.url.params) for r in recorder.requests] == [
        {"amount": "2", "after": "c0"},
        {"amount": "2", "after": "c2"},
    ]
    assert len(once.requests) == 1


def test_page_size_validated_before_any_request() -> None:
    client = AsyncClient(api_key="k")
    with pytest.raises(ValueError, match="page_size"):
        client._paginate("/t", dict, page_size=1001)
    run(client.aclose())


def test_missing_key_fails_before_sending() -> None:
    recorder = AsyncRecorder(httpx.Response(200, json={}))

    async def scenario() -> None:
        client = make(recorder, api_key=None)
        try:
            with pytest.raises(ConfigurationError):
                await client._get_json("/x")
            with pytest.raises(ConfigurationError):
                await client._auth_headers()
        finally:
            await finish(client)

    run(scenario())
    assert recorder.requests == []


def test_sandbox_credentials_in_async(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = "http://169.254.170.2/v1/credentials"
    monkeypatch.setenv("TILDE_SANDBOX_CREDENTIALS_URI", uri)
    expires = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()

    async def scenario() -> list[str]:
        async with AsyncClient(endpoint_url=ENDPOINT) as client:
            assert isinstance(client._credentials_provider, SandboxCredentialsProvider)
            first = await client._auth_headers()  # fetched in a worker thread
            second = await client._auth_headers()  # served from the cache
            return [first["Authorization"], second["Authorization"]]

    with respx.mock(assert_all_called=True) as router:
        route = router.get(uri).respond(200, json={"access_token": "tst-async", "expires_at": expires})
        assert run(scenario()) == ["Bearer tst-async", "Bearer tst-async"]
        assert route.call_count == 1


def test_async_native_provider_is_awaited() -> None:
    class AsyncProvider:
        def get_token(self) -> str:
            raise AssertionError("the async path must be used")

        async def aget_token(self) -> str:
            return "tok-async"

    recorder = AsyncRecorder(httpx.Response(200, json={}))

    async def scenario() -> None:
        client = make(recorder, api_key=None, credentials_provider=AsyncProvider())
        try:
            await client._get_json("/x")
        finally:
            await finish(client)

    run(scenario())
    assert recorder.requests[0].headers["Authorization"] == "Bearer tok-async"


def test_owned_pools_closed_and_close_is_idempotent() -> None:
    async def scenario() -> AsyncClient:
        client = AsyncClient(api_key="k")
        _ = client._upload_http
        await client.aclose()
        await client.aclose()
        return client

    client = run(scenario())
    assert client._http.is_closed
    assert client._upload_http_client is not None
    assert client._upload_http_client.is_closed
    assert client._ws_base_url == "wss://tilde.run/api/v1"


def test_injected_async_client_left_open() -> None:
    async def scenario() -> httpx.AsyncClient:
        http = httpx.AsyncClient()
        async with AsyncClient(api_key="k", httpx_client=http) as client:
            assert client._http is http
        assert not http.is_closed
        await http.aclose()
        return http

    run(scenario())


def test_default_sleep_is_awaitable() -> None:
    recorder = AsyncRecorder(
        httpx.Response(503, headers={"Retry-After": "0"}), httpx.Response(200, json={"t": 1})
    )

    async def scenario() -> dict[str, Any]:
        client = AsyncClient(
            endpoint_url=ENDPOINT,
            api_key="k",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(recorder)),
        )
        try:
            return await client._get_json("/x")  # the retry waits through anyio.sleep(0)
        finally:
            await finish(client)

    assert run(scenario()) == {"t": 1}
    assert len(recorder.requests) == 2
