"""The exception classes added for issue 13: 429, timeouts vs connection failures, headers, typed results."""

from __future__ import annotations

import pickle
import socket
import typing
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
import pytest
from core_helpers import Recorder

from tilde.core import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    Client,
    ClientClosedError,
    RateLimitError,
    TildeError,
    TransportError,
    api_error_for_status,
)
from tilde.core._transport import error_from_response, transport_error
from tilde.core.errors import CommandError, parse_retry_after

MakeClient = Callable[..., Client]
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_new_classes_extend_the_published_tree() -> None:
    assert issubclass(RateLimitError, APIError)
    assert issubclass(APITimeoutError, TransportError)
    assert issubclass(APIConnectionError, TransportError)
    assert not issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(ClientClosedError, TildeError)
    # The builtin is not shadowed: the SDK's timeout is its own class.
    assert APITimeoutError is not TimeoutError
    assert not issubclass(APITimeoutError, OSError)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("Fri, 02 Jan 2026 03:04:35 GMT", 30.0),
        ("Fri, 02 Jan 2026 03:00:00 GMT", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, lambda: NOW) == seconds


def test_429_is_a_rate_limit_error_with_retry_after_and_headers() -> None:
    response = httpx.Response(
        429,
        headers={
            "Retry-After": "12",
            "X-Request-Id": "req-abc",
            "Set-Cookie": "session=hunter2",
            "WWW-Authenticate": "Bearer realm=x",
            "X-RateLimit-Remaining": "0",
        },
        json={"message": "slow down", "code": "rate_limited"},
        request=httpx.Request("GET", "http://tilde.test/api/v1/x"),
    )
    error = error_from_response(response)
    assert type(error) is RateLimitError
    assert error.retry_after == 12.0
    assert error.request_id == "req-abc"
    assert error.headers["x-ratelimit-remaining"] == "0"
    assert error.headers["retry-after"] == "12"
    assert "set-cookie" not in error.headers
    assert "www-authenticate" not in error.headers
    assert "hunter2" not in repr(error.headers)


def test_rate_limit_error_without_retry_after() -> None:
    error = api_error_for_status(429, message="m")
    assert isinstance(error, RateLimitError)
    assert error.retry_after is None
    assert RateLimitError(message="m", retry_after=3).retry_after == 3


def test_api_error_headers_drop_credentials_and_lower_names() -> None:
    error = APIError(
        500,
        headers=[("Authorization", "Bearer tuk-x"), ("Proxy-Authorization", "p"), ("Content-Type", "a/b")],
    )
    assert error.headers == {"content-type": "a/b"}
    assert APIError(500).headers == {}


def test_new_fields_survive_pickling() -> None:
    error = api_error_for_status(429, message="m", request_id="r", headers={"Retry-After": "4", "X-A": "b"})
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is RateLimitError
    assert clone.retry_after == 4.0
    assert clone.headers == {"retry-after": "4", "x-a": "b"}
    assert str(clone) == str(error)


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx.ConnectTimeout("t"), APITimeoutError),
        (httpx.ReadTimeout("t"), APITimeoutError),
        (httpx.WriteTimeout("t"), APITimeoutError),
        (httpx.PoolTimeout("t"), APITimeoutError),
        (httpx.ConnectError("c"), APIConnectionError),
        (httpx.ReadError("c"), APIConnectionError),
        (httpx.RemoteProtocolError("c"), APIConnectionError),
        (httpx.ProxyError("c"), APIConnectionError),
        (httpx.UnsupportedProtocol("c"), TransportError),
    ],
)
def test_transport_error_classes(exc: Exception, cls: type[TransportError]) -> None:
    error = transport_error("GET x failed", exc)
    assert type(error) is cls
    assert error.cause is exc
    assert error.__cause__ is exc


def test_timeout_and_refusal_are_told_apart_through_the_client(make_client: MakeClient) -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(APITimeoutError):
        make_client(Recorder(time_out), max_retries=0)._get("/x")
    with pytest.raises(APIConnectionError):
        make_client(Recorder(refuse), max_retries=0)._get("/x")


def test_refused_connection_over_real_sockets(sleeps: list[float]) -> None:
    # A port that was free a moment ago: connecting to it is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Client(endpoint_url=f"http://127.0.0.1:{port}", api_key="k", max_retries=0)
    with client, pytest.raises(APIConnectionError) as info:
        client._get("/x")
    assert not isinstance(info.value, APITimeoutError)


def test_rate_limit_after_retries_through_the_client(make_client: MakeClient, sleeps: list[float]) -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "2"}, json={"message": "busy"}))
    client = make_client(recorder, max_retries=1)
    with pytest.raises(RateLimitError) as info:
        client._get("/x")
    assert info.value.retry_after == 2.0
    assert sleeps == [2.0]
    assert len(recorder.requests) == 2


def test_command_error_result_is_typed_as_run_result() -> None:
    from tilde.compute import RunResult

    hints = typing.get_type_hints(CommandError, localns={"RunResult": RunResult})
    assert hints["result"] == typing.Optional[RunResult]  # noqa: UP045 (what get_type_hints returns)
    assert "RunResult" in CommandError.__annotations__["result"]
