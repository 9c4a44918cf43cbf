"""Closed clients raise `ClientClosedError`; `with_options` copies share the pools and override options."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
import pytest
from core_helpers import ENDPOINT, Recorder

from tilde.core import AsyncClient, Client, ClientClosedError, TildeError

MakeClient = Callable[..., Client]


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True}, headers={"X-Request-Id": "req-1"})


def test_a_closed_client_raises_a_tilde_error() -> None:
    client = Client(endpoint_url=ENDPOINT, api_key="k")
    client.close()
    assert client.is_closed
    with pytest.raises(ClientClosedError) as info:
        client._get_json("/organizations")
    assert isinstance(info.value, TildeError)
    message = str(info.value)
    assert "closed" in message
    assert "new client" in message
    with pytest.raises(ClientClosedError):
        client._auth_headers()


def test_an_injected_http_client_closed_by_its_owner(make_client: MakeClient) -> None:
    client = make_client(Recorder(ok))
    client._http.close()
    with pytest.raises(ClientClosedError, match="http_client="):
        client._get("/x")


def test_closing_a_client_with_an_injected_pool_still_closes_the_client(make_client: MakeClient) -> None:
    client = make_client(Recorder(ok))
    client.close()
    assert not client._http.is_closed  # the caller's pool is the caller's
    with pytest.raises(ClientClosedError):
        client._get("/x")


def test_with_options_overrides_timeout_retries_and_headers(
    make_client: MakeClient, sleeps: list[float]
) -> None:
    recorder = Recorder(httpx.Response(503), ok)
    client = make_client(recorder, max_retries=0, timeout=7)
    patient = client.with_options(timeout=42, max_retries=1, extra_headers={"X-Trace": "t1"})

    assert type(patient) is type(client)
    assert patient._http is client._http
    assert patient._get_json("/x") == {"ok": True}
    assert len(sleeps) == 1  # one retry: the copy's max_retries
    sent = recorder.requests[-1]
    assert sent.headers["X-Trace"] == "t1"
    assert sent.headers["Authorization"] == "Bearer tuk-secret"
    assert sent.extensions["timeout"]["read"] == 42

    # The original is untouched.
    recorder.script = [httpx.Response(503)]
    with pytest.raises(TildeError):
        client._get("/x")
    assert len(sleeps) == 1
    sent = recorder.requests[-1]
    assert "X-Trace" not in sent.headers
    assert sent.extensions["timeout"]["read"] == 7


def test_with_options_layers_and_keeps_what_it_does_not_change(make_client: MakeClient) -> None:
    recorder = Recorder(ok)
    client = make_client(recorder, max_retries=4)
    first = client.with_options(extra_headers={"X-A": "1"})
    second = first.with_options(extra_headers={"X-B": "2"})
    assert second._core.retry.max_retries == 4
    second._get("/x")
    assert recorder.requests[-1].headers["X-A"] == "1"
    assert recorder.requests[-1].headers["X-B"] == "2"


def test_with_options_headers_never_reach_presigned_urls(make_client: MakeClient) -> None:
    recorder = Recorder(ok)
    client = make_client(recorder).with_options(extra_headers={"X-Trace": "t"})
    client._presigned_put("https://store.test/u?X-Amz-Signature=s", b"data")
    assert "X-Trace" not in recorder.requests[-1].headers
    assert "Authorization" not in recorder.requests[-1].headers


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": -1}, {"max_retries": True}, {"extra_headers": {"authorization": "Bearer x"}}],
)
def test_with_options_rejects_bad_values(make_client: MakeClient, kwargs: dict[str, object]) -> None:
    client = make_client(Recorder(ok))
    with pytest.raises(ValueError):
        client.with_options(**kwargs)  # type: ignore[arg-type]


def test_closing_the_original_closes_its_copies(make_client: MakeClient) -> None:
    client = make_client(Recorder(ok))
    copy = client.with_options(timeout=3)
    client.close()
    assert copy.is_closed
    with pytest.raises(ClientClosedError):
        copy._get("/x")
    with pytest.raises(ClientClosedError):
        client.with_options(timeout=1)


def test_closing_a_copy_releases_nothing_of_the_original() -> None:
    client = Client(endpoint_url=ENDPOINT, api_key="k")
    try:
        copy = client.with_options(max_retries=0)
        upload_pool = copy._upload_http
        assert upload_pool is client._upload_http
        with copy:
            pass
        assert copy.is_closed
        assert not client.is_closed
        assert not client._http.is_closed
        assert not upload_pool.is_closed
        with pytest.raises(ClientClosedError):
            copy._get("/x")
    finally:
        client.close()
    assert upload_pool.is_closed


def test_async_client_closed_and_with_options() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={}, headers={"X-Request-Id": "req-async"})

    async def main() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        client = AsyncClient(endpoint_url=ENDPOINT, api_key="k", http_client=http)
        copy = client.with_options(extra_headers={"X-A": "1"}, timeout=9)
        assert isinstance(copy, AsyncClient)
        await copy._get_json("/x")
        assert seen[-1].headers["X-A"] == "1"
        assert client.last_request_id == "req-async"
        await client.aclose()
        with pytest.raises(ClientClosedError):
            await copy._get_json("/x")
        with pytest.raises(ClientClosedError):
            await client._auth_headers()
        await http.aclose()

    anyio.run(main)
