"""Each layer logs to its own ``tilde.*`` logger: part retries, multipart aborts, websocket exec; no secrets.

Everything runs against the real tilde-server; the only stand-in is a transport wrapper that makes chosen
presigned part uploads fail, as an overloaded storage node would.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

import tilde
from tilde.core import TransportError
from tilde.data.upload_strategies import UploadSettings

if TYPE_CHECKING:
    from tilde.server import LocalServer


class FailingParts(httpx.BaseTransport):
    """Forwards to the real server, answering 500 instead for the first ``failures`` presigned part PUTs."""

    def __init__(self, failures: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.failures = failures
        self.secrets: set[str] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for key in ("signature", "upload_token"):
            value = request.url.params.get(key)
            if value:
                self.secrets.add(value)
        # A presigned part URL: a PUT without Authorization that names its part.
        is_part = request.method == "PUT" and "part" in request.url.params
        if is_part and "authorization" not in request.headers and self.failures > 0:
            self.failures -= 1
            return httpx.Response(500, text="storage node restarting", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def capture(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="tilde"):
        yield caplog


def client_with(server: LocalServer, transport: FailingParts) -> tuple[tilde.Client, httpx.Client]:
    http = httpx.Client(transport=transport, base_url=server.endpoint_url.rstrip("/") + "/api/v1")
    client = tilde.Client(endpoint_url=server.endpoint_url, api_key=server.api_key, http_client=http)
    # Small parts so a few bytes make a multipart upload; no backoff between part tries.
    client.upload_settings = UploadSettings(
        threshold=0, part_size=4, max_parts_in_flight=1, part_attempts=2, retry_backoff=0.0
    )
    return client, http


def assert_no_secrets(text: str, transport: FailingParts, server: LocalServer) -> None:
    assert transport.secrets, "the upload made no signed requests"
    for secret in (*transport.secrets, server.api_key):
        assert secret not in text
    assert not re.search(r"(signature|upload_token)=(?!\*\*\*)", text)


def test_part_retry_is_logged_at_info(
    server: LocalServer, repo_path: str, capture: pytest.LogCaptureFixture
) -> None:
    transport = FailingParts(failures=1)
    client, http = client_with(server, transport)
    with client, http, client.repository(repo_path).session() as session:
        session.objects.put("parts.bin", b"0123456789")
        assert session.objects.get("parts.bin").read() == b"0123456789"
    retries = [r for r in capture.records if r.name == "tilde.data.upload" and "retrying" in r.getMessage()]
    assert len(retries) == 1
    assert retries[0].levelno == logging.INFO
    assert "part 1 failed" in retries[0].getMessage()
    assert "parts.bin" in retries[0].getMessage()
    assert_no_secrets(capture.text, transport, server)


def test_multipart_abort_is_logged_at_warning(
    server: LocalServer, repo_path: str, capture: pytest.LogCaptureFixture
) -> None:
    transport = FailingParts(failures=2)
    client, http = client_with(server, transport)
    with client, http, client.repository(repo_path).session() as session, pytest.raises(TransportError):
        session.objects.put("doomed.bin", b"0123456789")
    warnings = [r for r in capture.records if r.name == "tilde.data.upload" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "doomed.bin" in warnings[0].getMessage()
    assert "aborting" in warnings[0].getMessage()
    aborts = [
        r
        for r in capture.records
        if r.name == "tilde.core.http" and r.getMessage().startswith("DELETE ") and "-> 2" in r.getMessage()
    ]
    assert aborts, "the multipart upload was not aborted on the server"
    assert_no_secrets(capture.text, transport, server)


@pytest.mark.sandbox
def test_websocket_exec_is_logged_at_debug(
    server: LocalServer, repo_path: str, capture: pytest.LogCaptureFixture
) -> None:
    with tilde.Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        shell = client.repository(repo_path).shell()
        try:
            shell.wait_until_running(timeout=60)
            assert shell.run(["sh", "-c", "exit 3"]).exit_code == 3
        finally:
            if shell.status().is_active:
                shell.cancel()
            shell.sandbox.wait(timeout=60)
    lines = [r.getMessage() for r in capture.records if r.name == "tilde.compute.exec"]
    assert all(r.levelno == logging.DEBUG for r in capture.records if r.name == "tilde.compute.exec")
    assert any(line.endswith(": open") for line in lines)
    assert any("exited with code 3" in line for line in lines)
    assert any(line.endswith(": closed") for line in lines)
    assert server.api_key not in capture.text
