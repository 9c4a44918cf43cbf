"""``tilde.configure``'s client options, ``with_options`` on the composed client, closed clients' handles."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import httpx
import pytest

import tilde
import tilde.core
import tilde.exceptions

if TYPE_CHECKING:
    from tilde.server import LocalServer

UNREACHABLE = "http://127.0.0.1:9"


def test_configure_takes_the_client_options() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"results": [], "pagination": {"has_more": False}})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    try:
        tilde.configure(
            api_key="key",
            endpoint_url="http://tilde.test",
            timeout=12.5,
            max_retries=0,
            http_client=http,
            extra_user_agent="my-agent/1.0",
        )
        client = tilde._get_default_client()
        assert client._core.retry.max_retries == 0
        assert client._http is http
        list(tilde.organizations.list())
        assert seen[0].headers["User-Agent"].endswith(" my-agent/1.0")
        assert seen[0].extensions["timeout"]["read"] == 12.5
        tilde.configure(api_key="key", endpoint_url=UNREACHABLE)
        # configure() closed the client it replaced, never the caller's HTTP client.
        assert not http.is_closed
    finally:
        http.close()


def test_configure_keeps_the_published_signature() -> None:
    parameters = inspect.signature(tilde.configure).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None for p in parameters.values())
    published = ["api_key", "endpoint_url", "default_sandbox_image", "credentials_provider"]
    assert list(parameters)[:4] == published
    assert set(parameters) >= {"timeout", "max_retries", "http_client", "extra_user_agent"}
    # The defaults stay the client's: no options given means max_retries=2 and the default timeout.
    tilde.configure(api_key="key", endpoint_url=UNREACHABLE)
    assert tilde._get_default_client()._core.retry.max_retries == 2


def test_a_bad_option_keeps_the_previous_default_client() -> None:
    tilde.configure(api_key="key", endpoint_url=UNREACHABLE)
    before = tilde._get_default_client()
    with pytest.raises(ValueError, match="max_retries"):
        tilde.configure(api_key="key", endpoint_url=UNREACHABLE, max_retries=-1)
    assert tilde._get_default_client() is before
    assert not before.is_closed


def test_with_options_keeps_the_composed_client() -> None:
    with tilde.Client(api_key="key", endpoint_url=UNREACHABLE) as client:
        copy = client.with_options(timeout=5, max_retries=0, extra_headers={"X-A": "b"})
        assert type(copy) is tilde.Client
        assert copy._http is client._http
        repo = copy.repository("oo/rr")
        assert repo._client is copy
        assert hasattr(repo, "shell")
        assert hasattr(copy, "organizations")


def test_closed_client_error_is_public_everywhere() -> None:
    for name in ("ClientClosedError", "RateLimitError", "APITimeoutError", "APIConnectionError"):
        cls = getattr(tilde.core.errors, name)
        assert getattr(tilde.exceptions, name) is cls
        assert getattr(tilde.core, name) is cls
        assert name in tilde.exceptions.__all__


def test_module_level_handles_after_configure(server: LocalServer, repo_path: str) -> None:
    tilde.configure(endpoint_url=server.endpoint_url, api_key=server.api_key)
    old_repo = tilde.repository(repo_path)
    old_orgs = tilde.organizations
    old_repo.refresh()  # works while its client is the default

    tilde.configure(endpoint_url=server.endpoint_url, api_key=server.api_key)

    with pytest.raises(tilde.exceptions.ClientClosedError) as info:
        old_repo.session()
    message = str(info.value)
    assert "tilde.configure()" in message
    assert "tilde.repository(" in message
    assert isinstance(info.value, tilde.exceptions.TildeError)
    with pytest.raises(tilde.exceptions.ClientClosedError):
        list(old_orgs.list())

    # A fresh handle, taken after configure(), works.
    with tilde.repository(repo_path).session() as session:
        session.objects.put("a.txt", b"a")
        assert session.commit("fresh handle")


def test_handles_of_an_explicitly_closed_client(server: LocalServer, repo_path: str) -> None:
    with tilde.Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        repo = client.repository(repo_path)
        session = repo.session()
    with pytest.raises(tilde.exceptions.ClientClosedError) as info:
        session.objects.put("a.txt", b"a")
    assert "new client" in str(info.value)
    assert "tilde.configure" not in str(info.value)
    with pytest.raises(tilde.exceptions.ClientClosedError):
        repo.refresh()
