from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from importlib.metadata import version

import httpx
import pytest
import respx
from core_helpers import BASE, ENDPOINT, Recorder

from tilde.core import (
    APIError,
    AuthenticationError,
    Client,
    NotFoundError,
    SerializationError,
    ServerError,
    TransportError,
)
from tilde.core._base import sdk_version, user_agent
from tilde.core._transport import DEFAULT_TIMEOUT, UPLOAD_TIMEOUT

MakeClient = Callable[..., Client]


def ok(body: object = None) -> httpx.Response:
    return httpx.Response(200, json=body if body is not None else {"ok": True})


def status(code: int, **kwargs: object) -> httpx.Response:
    return httpx.Response(code, **kwargs)  # type: ignore[arg-type]


# -- headers, URLs -------------------------------------------------------------------------------------------


def test_auth_and_user_agent_headers(make_client: MakeClient) -> None:
    recorder = Recorder(ok())
    client = make_client(recorder)
    assert client._get_json("/organizations") == {"ok": True}
    request = recorder.requests[0]
    assert request.headers["Authorization"] == "Bearer tuk-secret"
    assert request.headers["User-Agent"] == f"tilde-python-sdk/{sdk_version()}"
    assert str(request.url) == f"{BASE}/organizations"


def test_user_agent_version_and_suffix(make_client: MakeClient) -> None:
    assert sdk_version() == version("tilde-sdk")
    recorder = Recorder(ok())
    make_client(recorder, extra_user_agent="my-app/1.2")._get("/x")
    assert recorder.requests[0].headers["User-Agent"] == f"tilde-python-sdk/{sdk_version()} my-app/1.2"
    assert user_agent(None) == f"tilde-python-sdk/{sdk_version()}"


def test_user_agent_falls_back_to_core_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import PackageNotFoundError

    from tilde.core import __version__ as core_version
    from tilde.core import _base

    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    sdk_version.cache_clear()
    monkeypatch.setattr(_base, "version", missing)
    try:
        assert user_agent() == f"tilde-python-sdk/{core_version}"
    finally:
        sdk_version.cache_clear()


def test_owned_client_defaults() -> None:
    with respx.mock(assert_all_called=True) as router:
        route = router.get(f"{BASE}/organizations").respond(200, json={"results": []})
        with Client(endpoint_url=ENDPOINT + "/", api_key="tuk-1") as client:
            assert client._http.timeout == DEFAULT_TIMEOUT
            assert DEFAULT_TIMEOUT.connect == 5.0
            assert DEFAULT_TIMEOUT.read == 60.0
            assert client._http.follow_redirects is False
            client._get_json("/organizations")
        assert route.calls.last.request.headers["authorization"] == "Bearer tuk-1"
    assert client._http.is_closed


def test_timeout_option() -> None:
    with Client(api_key="k", timeout=3) as client:
        assert client._http.timeout == httpx.Timeout(3.0)
    custom = httpx.Timeout(10.0, connect=1.0)
    with Client(api_key="k", timeout=custom) as client:
        assert client._http.timeout == custom


def test_per_request_timeout_reaches_the_transport(make_client: MakeClient) -> None:
    recorder = Recorder(ok(), ok())
    client = make_client(recorder, timeout=7)
    client._get("/a")
    client._request("GET", "/b", timeout=1.5)
    assert recorder.requests[0].extensions["timeout"]["read"] == 7.0
    assert recorder.requests[1].extensions["timeout"]["read"] == 1.5


def test_absolute_urls_and_none_params(make_client: MakeClient) -> None:
    recorder = Recorder(ok(), ok())
    client = make_client(recorder)
    client._get("http://elsewhere.test/thing", params={"a": "1"})
    client._get("/items", params={"prefix": None, "after": None, "amount": 5})
    assert str(recorder.requests[0].url) == "http://elsewhere.test/thing?a=1"
    assert str(recorder.requests[1].url) == f"{BASE}/items?amount=5"


def test_ws_base_url() -> None:
    with Client(endpoint_url="https://tilde.run/", api_key="k") as client:
        assert client._ws_base_url == "wss://tilde.run/api/v1"
    with Client(endpoint_url="http://127.0.0.1:8123", api_key="k") as client:
        assert client._ws_base_url == "ws://127.0.0.1:8123/api/v1"


def test_config_and_repr(make_client: MakeClient) -> None:
    client = make_client(Recorder(ok()), default_sandbox_image="alpine:3")
    assert client._config.base_url == BASE
    assert client._config.default_sandbox_image == "alpine:3"
    assert "tuk-secret" not in repr(client)


def test_both_http_client_spellings() -> None:
    http = httpx.Client()
    with Client(api_key="k", httpx_client=http) as client:
        assert client._http is http
    with pytest.raises(ValueError, match="not both"):
        Client(api_key="k", http_client=http, httpx_client=httpx.Client())
    http.close()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_max_retries_validation(bad: object) -> None:
    with pytest.raises(ValueError, match="max_retries"):
        Client(api_key="k", max_retries=bad)  # type: ignore[arg-type]


# -- lifecycle -----------------------------------------------------------------------------------------------


def test_close_is_idempotent_and_leaves_injected_client_open(make_client: MakeClient) -> None:
    client = make_client(Recorder(ok()))
    client.close()
    client.close()
    assert not client._http.is_closed


def test_context_manager_closes_owned_pools() -> None:
    with respx.mock(assert_all_called=True) as router:
        router.put("https://store.test/upload").respond(200, headers={"ETag": '"e"'})
        with Client(api_key="k") as client:
            client._presigned_put("https://store.test/upload", b"x")
            upload = client._upload_http
            assert upload is not client._http
        assert client._http.is_closed
        assert upload.is_closed


# -- JSON helpers --------------------------------------------------------------------------------------------


def test_get_json_rejects_non_objects(make_client: MakeClient) -> None:
    client = make_client(Recorder(status(200, content=b"[1]"), status(200, content=b"<html>"), status(200)))
    with pytest.raises(SerializationError, match="list"):
        client._get_json("/a")
    with pytest.raises(SerializationError, match="html"):
        client._get_json("/a")
    with pytest.raises(SerializationError):
        client._get_json("/a")


def test_write_helpers(make_client: MakeClient) -> None:
    recorder = Recorder(
        status(204),
        status(201, content=b""),
        status(200, json={"key": "K"}),
        status(200, json={"enabled": False}),
        status(204),
        status(200, headers={"ETag": '"abc"'}),
    )
    client = make_client(recorder)
    assert client._post_json("/a", json={"x": 1}) is None
    assert client._post_json("/b") is None
    assert client._put_json("/c", json={"value": "v"}) == {"key": "K"}
    assert client._patch_json("/d", json={"enabled": False}) == {"enabled": False}
    assert client._delete("/e", params={"q": "1"}) is None
    assert client._head("/f").headers["ETag"] == '"abc"'
    methods = [(r.method, r.url.path) for r in recorder.requests]
    assert methods == [
        ("POST", "/api/v1/a"),
        ("POST", "/api/v1/b"),
        ("PUT", "/api/v1/c"),
        ("PATCH", "/api/v1/d"),
        ("DELETE", "/api/v1/e"),
        ("HEAD", "/api/v1/f"),
    ]
    assert recorder.requests[0].content == b'{"x":1}'
    assert "content-type" not in recorder.requests[1].headers  # no body, no Content-Type


def test_post_json_rejects_non_object_body(make_client: MakeClient) -> None:
    client = make_client(Recorder(status(201, content=b"oops")))
    with pytest.raises(SerializationError):
        client._post_json("/a")


# -- error mapping -------------------------------------------------------------------------------------------


def test_errors_are_mapped_with_request_details(make_client: MakeClient) -> None:
    client = make_client(
        Recorder(status(404, json={"message": "no repo", "code": "not_found", "request_id": "req-9"}))
    )
    with pytest.raises(NotFoundError) as info:
        client._get_json("/organizations/o/repositories/r")
    error = info.value
    assert (
        str(error)
        == f"GET {BASE}/organizations/o/repositories/r -> 404: no repo [code=not_found request_id=req-9]"
    )


def test_redirects_are_errors_unless_followed(make_client: MakeClient) -> None:
    client = make_client(Recorder(status(307, headers={"Location": "https://blob.test/x"})))
    with pytest.raises(APIError) as info:
        client._request("GET", "/r/object")
    assert info.value.status_code == 307
    assert "https://blob.test/x" in info.value.message


def test_same_origin_redirect_keeps_authorization(make_client: MakeClient) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/object"):
            return status(307, headers={"Location": f"{ENDPOINT}/blobs/1"})
        return status(200, content=b"bytes")

    recorder = Recorder(handler)
    response = make_client(recorder)._request("GET", "/object", follow_redirects=True)
    assert response.content == b"bytes"
    assert recorder.requests[1].headers["Authorization"] == "Bearer tuk-secret"


def test_cross_origin_redirect_drops_authorization(make_client: MakeClient) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "tilde.test":
            return status(302, headers={"Location": "https://blob.other.test/x?sig=abc"})
        return status(200, content=b"bytes")

    recorder = Recorder(handler)
    make_client(recorder)._request("GET", "/object", follow_redirects=True)
    assert "Authorization" not in recorder.requests[1].headers
    assert recorder.requests[1].url.host == "blob.other.test"


# -- retries -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [429, 502, 503, 504])
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_idempotent_methods_retry_on_retryable_statuses(
    make_client: MakeClient, sleeps: list[float], code: int, method: str
) -> None:
    recorder = Recorder(status(code), status(code), ok())
    response = make_client(recorder)._request(method, "/thing")
    assert response.status_code == 200
    assert len(recorder.requests) == 3
    assert len(sleeps) == 2
    # exponential: second delay is about twice the first (jitter takes off at most a quarter)
    assert 0.375 <= sleeps[0] <= 0.5
    assert 0.75 <= sleeps[1] <= 1.0


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_methods_do_not_retry_statuses(
    make_client: MakeClient, sleeps: list[float], method: str
) -> None:
    recorder = Recorder(status(503), ok())
    with pytest.raises(ServerError):
        make_client(recorder)._request(method, "/thing")
    assert len(recorder.requests) == 1
    assert sleeps == []


def test_retries_are_exhausted_then_the_error_is_raised(make_client: MakeClient, sleeps: list[float]) -> None:
    recorder = Recorder(status(503, json={"message": "busy"}))
    with pytest.raises(ServerError, match="busy"):
        make_client(recorder, max_retries=3)._get("/x")
    assert len(recorder.requests) == 4
    assert len(sleeps) == 3


def test_max_retries_zero(make_client: MakeClient, sleeps: list[float]) -> None:
    recorder = Recorder(status(502))
    with pytest.raises(ServerError):
        make_client(recorder, max_retries=0)._get("/x")
    assert len(recorder.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 500, 501])
def test_other_statuses_are_never_retried(make_client: MakeClient, sleeps: list[float], code: int) -> None:
    recorder = Recorder(status(code))
    with pytest.raises(APIError):
        make_client(recorder)._get("/x")
    assert len(recorder.requests) == 1
    assert sleeps == []


def test_401_is_authentication_error_and_not_refreshed(make_client: MakeClient) -> None:
    recorder = Recorder(status(401, json={"message": "bad token", "code": "unauthorized", "request_id": "r"}))
    with pytest.raises(AuthenticationError):
        make_client(recorder)._get("/x")
    assert len(recorder.requests) == 1


def test_retry_after_seconds(make_client: MakeClient, sleeps: list[float]) -> None:
    recorder = Recorder(status(429, headers={"Retry-After": "3"}), ok())
    make_client(recorder)._get("/x")
    assert sleeps == [3.0]


def test_retry_after_http_date(make_client: MakeClient, sleeps: list[float]) -> None:
    now = datetime(2026, 5, 14, 12, 0, tzinfo=timezone.utc)
    when = email.utils.format_datetime(now + timedelta(seconds=12), usegmt=True)
    recorder = Recorder(status(503, headers={"Retry-After": when}), ok())
    client = make_client(recorder)
    client._core.now = lambda: now
    client._get("/x")
    assert sleeps == [12.0]


def test_retry_after_is_capped_and_never_negative(make_client: MakeClient, sleeps: list[float]) -> None:
    past = email.utils.format_datetime(datetime(2000, 1, 1, tzinfo=timezone.utc), usegmt=True)
    recorder = Recorder(
        status(429, headers={"Retry-After": "86400"}), status(429, headers={"Retry-After": past}), ok()
    )
    make_client(recorder)._get("/x")
    assert sleeps == [60.0, 0.0]


def test_unparsable_retry_after_falls_back_to_backoff(make_client: MakeClient, sleeps: list[float]) -> None:
    recorder = Recorder(status(429, headers={"Retry-After": "soon"}), ok())
    make_client(recorder)._get("/x")
    assert 0.375 <= sleeps[0] <= 0.5


def test_backoff_is_capped(make_client: MakeClient, sleeps: list[float]) -> None:
    recorder = Recorder(*([status(503)] * 7), ok())
    make_client(recorder, max_retries=7)._get("/x")
    assert max(sleeps) <= 8.0
    assert sleeps[-1] >= 6.0


def connect_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
def test_connect_errors_are_retried_for_every_method(
    make_client: MakeClient, sleeps: list[float], method: str
) -> None:
    recorder = Recorder(connect_error, connect_error, ok())
    assert make_client(recorder)._request(method, "/x", json={"a": 1}).status_code == 200
    assert len(recorder.requests) == 3
    assert len(sleeps) == 2


def test_read_errors_retry_idempotent_only(make_client: MakeClient, sleeps: list[float]) -> None:
    recorder = Recorder(read_timeout, ok())
    assert make_client(recorder)._get("/x").status_code == 200
    recorder = Recorder(read_timeout, ok())
    with pytest.raises(TransportError) as info:
        make_client(recorder)._request("POST", "/x")
    assert isinstance(info.value.cause, httpx.ReadTimeout)
    assert len(recorder.requests) == 1


def test_network_failure_after_retries_is_transport_error(
    make_client: MakeClient, sleeps: list[float]
) -> None:
    recorder = Recorder(connect_error)
    with pytest.raises(TransportError, match="connection refused") as info:
        make_client(recorder)._get("/x")
    assert not isinstance(info.value, APIError)
    assert len(recorder.requests) == 3


def test_streamed_bodies_are_not_replayed(make_client: MakeClient, sleeps: list[float]) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a"

    recorder = Recorder(status(503), ok())
    with pytest.raises(ServerError):
        make_client(recorder)._request("PUT", "/x", content=chunks())
    assert len(recorder.requests) == 1


def test_token_is_asked_for_on_every_attempt(make_client: MakeClient) -> None:
    tokens = iter(["t1", "t2"])

    class Rotating:
        def get_token(self) -> str:
            return next(tokens)

    recorder = Recorder(status(503), ok())
    make_client(recorder, api_key=None, credentials_provider=Rotating())._get("/x")
    assert [r.headers["Authorization"] for r in recorder.requests] == ["Bearer t1", "Bearer t2"]


# -- streams -------------------------------------------------------------------------------------------------


def test_stream_yields_unread_response(make_client: MakeClient) -> None:
    recorder = Recorder(status(200, content=b"line1\nline2\n"))
    client = make_client(recorder)
    with client._stream("GET", "/logs", headers={"Range": "bytes=0-"}) as response:
        assert list(response.iter_lines()) == ["line1", "line2"]
    assert recorder.requests[0].headers["Range"] == "bytes=0-"


def test_stream_errors_are_mapped_with_body(make_client: MakeClient) -> None:
    client = make_client(Recorder(status(410, json={"message": "logs expired", "code": "gone"})))
    with pytest.raises(APIError) as info, client._stream("GET", "/logs"):
        pytest.fail("must not yield")
    assert info.value.status_code == 410
    assert info.value.message == "logs expired"


def test_stream_read_failure_is_transport_error(make_client: MakeClient) -> None:
    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"partial"
            raise httpx.ReadError("connection reset")

    client = make_client(Recorder(status(200, stream=Broken())))
    with client._stream("GET", "/big") as response, pytest.raises(TransportError, match="connection reset"):
        response.read()


# -- presigned uploads ---------------------------------------------------------------------------------------


def test_presigned_put_sends_no_authorization(make_client: MakeClient) -> None:
    recorder = Recorder(status(200, headers={"ETag": '"md5"'}))
    response = make_client(recorder)._presigned_put("https://store.test/u?upload_token=abc", b"data")
    request = recorder.requests[0]
    assert response.headers["ETag"] == '"md5"'
    assert "Authorization" not in request.headers
    assert request.headers["Content-Type"] == "application/octet-stream"
    assert request.content == b"data"
    assert request.extensions["timeout"] == UPLOAD_TIMEOUT.as_dict()


def test_presigned_put_failure_is_transport_error(make_client: MakeClient) -> None:
    recorder = Recorder(status(403, text="signature expired"))
    with pytest.raises(TransportError, match="403") as info:
        make_client(recorder)._presigned_put(
            "https://store.test/u?upload_token=abc", b"x", headers={"X-A": "1"}
        )
    assert "abc" not in str(info.value)
    assert recorder.requests[0].headers["X-A"] == "1"


def test_presigned_put_does_not_need_a_token() -> None:
    with respx.mock(assert_all_called=True) as router:
        route = router.put("https://store.test/u").respond(201)
        with Client() as client:
            client._presigned_put("https://store.test/u", b"x")
        assert "authorization" not in route.calls.last.request.headers
