"""Request ids in the log and on the client, per-layer loggers and redaction, against the real server."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
from core_helpers import Recorder

from tilde.core import Client, NotFoundError
from tilde.core._logging import logger as tilde_logger

if TYPE_CHECKING:
    from tilde.server import LocalServer

MakeClient = Callable[..., Client]


@pytest.fixture
def live(server: LocalServer) -> Iterator[Client]:
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture(autouse=True)
def _restore_tilde_logger() -> Iterator[None]:
    level = tilde_logger.level
    yield
    tilde_logger.setLevel(level)


def sdk_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # The server runs in this process and logs under tilde.server: keep only the client's records.
    return [r for r in caplog.records if not r.name.startswith("tilde.server")]


def test_last_request_id_follows_the_responses(live: Client) -> None:
    assert live.last_request_id is None
    response = live._get("/organizations")
    assert response.headers["X-Request-Id"].startswith("req-")
    assert live.last_request_id == response.headers["X-Request-Id"]
    with pytest.raises(NotFoundError) as info:
        live._get_json(f"/organizations/missing-{uuid.uuid4().hex[:8]}")
    assert info.value.request_id
    assert live.last_request_id == info.value.request_id


def test_last_request_id_is_per_thread(live: Client) -> None:
    mismatches: list[tuple[str, str | None]] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(15):
            response = live._get("/organizations")
            expected = response.headers["X-Request-Id"]
            if live.last_request_id != expected:
                mismatches.append((expected, live.last_request_id))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    assert mismatches == []
    # The main thread made no request of its own.
    assert live.last_request_id is None


def test_each_response_line_names_its_request_id(live: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tilde"):
        response = live._get("/organizations")
        with pytest.raises(NotFoundError) as info:
            live._get_json(f"/organizations/missing-{uuid.uuid4().hex[:8]}")
    records = sdk_records(caplog)
    assert {r.name for r in records} <= {"tilde.core.http", "tilde.core.auth"}
    requests = [r for r in records if r.levelno == logging.DEBUG and r.getMessage().startswith("request ")]
    responses = [r for r in records if r.levelno == logging.INFO and " -> " in r.getMessage()]
    assert len(requests) == 2
    assert len(responses) == 2
    assert f"request_id={response.headers['X-Request-Id']}" in responses[0].getMessage()
    assert f"request_id={info.value.request_id}" in responses[1].getMessage()
    assert "-> 404" in responses[1].getMessage()
    text = "\n".join(r.getMessage() for r in records)
    assert live._config.api_key is not None
    assert live._config.api_key not in text
    assert "authorization': '***'" in text


def test_retries_are_logged_at_info_with_attempt_and_delay(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture, sleeps: list[float]
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    recorder = Recorder(
        httpx.Response(503, headers={"X-Request-Id": "req-busy", "Retry-After": "1"}),
        refuse,
        httpx.Response(200, json={}, headers={"X-Request-Id": "req-ok"}),
    )
    client = make_client(recorder, max_retries=2)
    with caplog.at_level(logging.INFO, logger="tilde"):
        client._get_json("/x", params={"upload_token": "upl-secret"})
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2
    assert all(r.startswith("GET http://tilde.test/api/v1/x") for r in retries)
    assert "-> 503; retrying in 1.00s (retry 1 of 2) request_id=req-busy" in retries[0]
    assert "(retry 2 of 2)" in retries[1]
    assert "ConnectError" in retries[1]
    assert all(r.levelno == logging.INFO and r.name == "tilde.core.http" for r in caplog.records)
    assert "upl-secret" not in caplog.text
    assert client.last_request_id == "req-ok"


def test_presigned_transfers_do_not_replace_the_api_request_id(make_client: MakeClient) -> None:
    recorder = Recorder(
        httpx.Response(200, json={}, headers={"X-Request-Id": "req-api"}),
        httpx.Response(200, headers={"X-Request-Id": "storage-id"}),
    )
    client = make_client(recorder)
    client._get_json("/x")
    client._presigned_put("https://store.test/u?X-Amz-Signature=sig", b"x")
    assert client.last_request_id == "req-api"


def test_with_options_copies_share_the_last_request_id(live: Client) -> None:
    copy = live.with_options(timeout=30)
    response = copy._get("/organizations")
    assert live.last_request_id == response.headers["X-Request-Id"]


def test_auth_logger_names_the_principal_never_the_token(caplog: pytest.LogCaptureFixture) -> None:
    from tilde.core import SandboxCredentialsProvider

    def serve(request: httpx.Request) -> httpx.Response:
        body = {
            "access_token": "tst-very-secret",
            "expires_at": "2099-01-01T00:00:00Z",
            "principal_type": "agent",
            "principal_name": "builder",
        }
        return httpx.Response(200, json=body)

    http = httpx.Client(transport=httpx.MockTransport(serve))
    uri = "http://creds.test/v1/credentials?token=uri-secret"
    provider = SandboxCredentialsProvider(uri, http_client=http)
    with http, provider, caplog.at_level(logging.DEBUG, logger="tilde"):
        assert provider.get_token() == "tst-very-secret"
    records = [r for r in caplog.records if r.name == "tilde.core.auth"]
    assert len(records) == 1
    assert "agent builder" in records[0].getMessage()
    assert "tst-very-secret" not in caplog.text
    assert "uri-secret" not in caplog.text
