from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import respx

from tilde.core import (
    Client,
    ConfigurationError,
    SandboxCredentials,
    SandboxCredentialsProvider,
    SerializationError,
    StaticTokenProvider,
    TransportError,
)

URI = "http://169.254.170.2/v1/credentials"
NOW = datetime(2026, 5, 14, 12, 0, tzinfo=timezone.utc)


def payload(
    token: str = "tst-1", expires: datetime | str = NOW + timedelta(hours=1), **extra: object
) -> dict[str, object]:
    return {
        "access_token": token,
        "expires_at": expires if isinstance(expires, str) else expires.isoformat(),
        **extra,
    }


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_provider(
    clock: Clock,
) -> Iterator[Callable[[Callable[[httpx.Request], httpx.Response]], SandboxCredentialsProvider]]:
    made: list[tuple[SandboxCredentialsProvider, httpx.Client]] = []

    def factory(handler: Callable[[httpx.Request], httpx.Response]) -> SandboxCredentialsProvider:
        http = httpx.Client(transport=httpx.MockTransport(handler))
        provider = SandboxCredentialsProvider(URI, http_client=http)
        provider._now = clock
        made.append((provider, http))
        return provider

    yield factory
    for provider, http in made:
        provider.close()
        http.close()


def test_fetch_parses_all_fields(make_provider: Callable[..., SandboxCredentialsProvider]) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json=payload(
                principal_type="agent",
                principal_id="u-1",
                principal_name="bot",
                organization_id="",
                api_url="http://api",
            ),
        )

    provider = make_provider(handler)
    credentials = provider.get_credentials()
    assert credentials.access_token == "tst-1"
    assert credentials.expires_at == NOW + timedelta(hours=1)
    assert (credentials.principal_type, credentials.principal_id, credentials.principal_name) == (
        "agent",
        "u-1",
        "bot",
    )
    assert credentials.organization_id is None  # empty strings become None
    assert credentials.api_url == "http://api"
    assert provider.credentials_uri == URI
    assert seen[0].method == "GET"
    assert "authorization" not in seen[0].headers
    assert "tst-1" not in repr(credentials)


def test_cached_until_two_minutes_before_expiry(
    make_provider: Callable[..., SandboxCredentialsProvider], clock: Clock
) -> None:
    tokens = iter(["tst-a", "tst-b", "tst-c"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=payload(next(tokens), clock.now + timedelta(minutes=10)))

    provider = make_provider(handler)
    assert provider.get_token() == "tst-a"
    clock.now += timedelta(minutes=7, seconds=59)
    assert provider.get_token() == "tst-a"
    assert provider.peek_token() == "tst-a"
    clock.now += timedelta(seconds=1)  # exactly 2 minutes left: refresh
    assert provider.peek_token() is None
    assert provider.get_token() == "tst-b"
    assert provider.get_credentials(force_refresh=True).access_token == "tst-c"


def test_invalidate_drops_the_cache(make_provider: Callable[..., SandboxCredentialsProvider]) -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return httpx.Response(200, json=payload(f"tst-{count}"))

    provider = make_provider(handler)
    assert provider.get_token() == "tst-1"
    assert provider.get_token() == "tst-1"
    provider.invalidate()
    assert provider.get_token() == "tst-2"


def test_naive_expiry_is_utc_and_nanoseconds_are_accepted(
    make_provider: Callable[..., SandboxCredentialsProvider],
) -> None:
    provider = make_provider(
        lambda r: httpx.Response(200, json=payload(expires="2026-05-14T13:00:00.123456789"))
    )
    expires = provider.get_credentials().expires_at
    assert expires.tzinfo is not None
    assert expires == datetime(2026, 5, 14, 13, 0, 0, 123456, tzinfo=timezone.utc)


def test_offset_expiry(make_provider: Callable[..., SandboxCredentialsProvider]) -> None:
    provider = make_provider(lambda r: httpx.Response(200, json=payload(expires="2026-05-14T15:00:00+02:00")))
    assert provider.get_credentials().expires_at == NOW + timedelta(hours=1)


def test_one_fetch_in_flight_across_threads(make_provider: Callable[..., SandboxCredentialsProvider]) -> None:
    calls = 0
    inside = threading.Event()
    release = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        inside.set()
        assert release.wait(10)
        return httpx.Response(200, json=payload())

    provider = make_provider(handler)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(provider.get_token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert inside.wait(10)
    release.set()
    for thread in threads:
        thread.join(10)
    assert results == ["tst-1"] * 8
    assert calls == 1


def test_non_200_is_a_configuration_error(make_provider: Callable[..., SandboxCredentialsProvider]) -> None:
    provider = make_provider(lambda r: httpx.Response(403, text="denied " + "z" * 500))
    with pytest.raises(ConfigurationError) as info:
        provider.get_token()
    assert "403" in str(info.value)
    assert "denied" in str(info.value)
    assert "z" * 201 not in str(info.value)


def test_network_failure_is_a_transport_error(
    make_provider: Callable[..., SandboxCredentialsProvider],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=request)

    with pytest.raises(TransportError) as info:
        make_provider(handler).get_token()
    assert isinstance(info.value.cause, httpx.ConnectError)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'"tok"',
        b'{"expires_at": "2026-05-14T13:00:00Z"}',
        b'{"access_token": "", "expires_at": "2026-05-14T13:00:00Z"}',
        b'{"access_token": 5, "expires_at": "2026-05-14T13:00:00Z"}',
        b'{"access_token": "t"}',
        b'{"access_token": "t", "expires_at": 1747224000}',
        b'{"access_token": "t", "expires_at": "tomorrow"}',
    ],
)
def test_bad_payloads_are_serialization_errors(
    make_provider: Callable[..., SandboxCredentialsProvider], body: bytes
) -> None:
    provider = make_provider(lambda r: httpx.Response(200, content=body))
    with pytest.raises(SerializationError):
        provider.get_token()


def test_owned_http_client_is_closed_but_a_given_one_is_not() -> None:
    with SandboxCredentialsProvider(URI) as owned:
        pass
    assert owned._http.is_closed
    given = httpx.Client()
    SandboxCredentialsProvider(URI, http_client=given).close()
    assert not given.is_closed
    given.close()


def test_from_payload_direct() -> None:
    credentials = SandboxCredentials.from_payload(payload())
    assert credentials.access_token == "tst-1"


# -- the client's token chain --------------------------------------------------------------------------------


def token_sent(client: Client) -> str:
    return client._auth_headers()["Authorization"]


def test_chain_every_level(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    """credentials_provider > api_key > TILDE_API_KEY > config file > sandbox URI."""
    monkeypatch.setenv("TILDE_SANDBOX_CREDENTIALS_URI", URI)
    with respx.mock(assert_all_called=True) as router:
        router.get(URI).respond(200, json=payload("tst-sandbox"))
        with Client() as client:
            assert token_sent(client) == "Bearer tst-sandbox"
            assert client._credentials_source == "sandbox"
            assert isinstance(client._credentials_provider, SandboxCredentialsProvider)
    config_file.write_text("api_key: tuk-file\n")
    with Client() as client:
        assert token_sent(client) == "Bearer tuk-file"
        assert client._credentials_source == "config-file"
    monkeypatch.setenv("TILDE_API_KEY", "tuk-env")
    with Client() as client:
        assert token_sent(client) == "Bearer tuk-env"
    with Client(api_key="tuk-arg") as client:
        assert token_sent(client) == "Bearer tuk-arg"
        assert client._credentials_source == "argument"
    with Client(api_key="tuk-arg", credentials_provider=StaticTokenProvider("tuk-explicit")) as client:
        assert token_sent(client) == "Bearer tuk-explicit"
        assert client._credentials_source == "explicit"


def test_static_key_wins_over_sandbox_without_any_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILDE_SANDBOX_CREDENTIALS_URI", URI)
    monkeypatch.setenv("TILDE_API_KEY", "tuk-env")
    with respx.mock(assert_all_called=False) as router:
        route = router.get(URI).respond(200, json=payload())
        with Client() as client:
            assert token_sent(client) == "Bearer tuk-env"
        assert not route.called


def test_sandbox_provider_owned_by_client_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILDE_SANDBOX_CREDENTIALS_URI", URI)
    client = Client()
    provider = client._credentials_provider
    assert isinstance(provider, SandboxCredentialsProvider)
    client.close()
    assert provider._http.is_closed


def test_explicit_provider_is_not_closed_by_client() -> None:
    closed: list[bool] = []

    class Provider:
        def get_token(self) -> str:
            return "tok"

        def close(self) -> None:
            closed.append(True)

    Client(credentials_provider=Provider()).close()
    assert closed == []


def test_sandbox_errors_surface_at_request_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILDE_SANDBOX_CREDENTIALS_URI", URI)
    with respx.mock(assert_all_called=True) as router:
        router.get(URI).respond(500, text="boom")
        with (
            Client(endpoint_url="http://tilde.test") as client,
            pytest.raises(ConfigurationError, match="500"),
        ):
            client._get_json("/organizations")


def test_no_token_source_fails_only_at_the_first_request() -> None:
    sent: list[httpx.Request] = []
    http = httpx.Client(
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200, json={}))
    )
    with Client(http_client=http) as client:  # construction must not fail
        assert client._config.api_key is None
        with pytest.raises(ConfigurationError, match="No API key"):
            client._get_json("/organizations")
        with pytest.raises(ConfigurationError):
            client._auth_headers()
    assert sent == []
    http.close()
