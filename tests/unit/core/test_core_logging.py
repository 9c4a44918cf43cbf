from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import httpx
import pytest
from core_helpers import Recorder

from tilde.core import Client, NotFoundError, TransportError
from tilde.core._logging import _TildeLogHandler, configure_logging, logger, redact_headers, redact_url

MakeClient = Callable[..., Client]
SECRETS = ("tuk-secret", "upl-123", "sig-456", "tok-789", "hunter2")


@pytest.fixture(autouse=True)
def _restore_tilde_logger() -> Iterator[None]:
    level = logger.level
    handlers = list(logger.handlers)
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.setLevel(level)


def test_redact_url() -> None:
    url = "https://u:hunter2@store.test/p?upload_token=upl-123&X-Amz-Signature=sig-456&token=tok-789&path=a/b"
    redacted = redact_url(url)
    for secret in SECRETS:
        assert secret not in redacted
    assert "path=a%2Fb" in redacted or "path=a/b" in redacted
    assert "upload_token=***" in redacted
    assert redact_url("http://h/api/v1/x?path=a") == "http://h/api/v1/x?path=a"


def test_redact_headers() -> None:
    headers = httpx.Headers({"Authorization": "Bearer tuk-secret", "User-Agent": "ua", "Cookie": "s=1"})
    assert redact_headers(headers) == {"authorization": "***", "user-agent": "ua", "cookie": "***"}


def test_nothing_is_configured_without_tilde_log(monkeypatch: pytest.MonkeyPatch) -> None:
    before = list(logger.handlers)
    configure_logging({})
    configure_logging({"TILDE_LOG": "verbose"})
    assert logger.handlers == before


@pytest.mark.parametrize(("value", "level"), [("debug", logging.DEBUG), ("INFO", logging.INFO)])
def test_tilde_log_installs_one_handler(monkeypatch: pytest.MonkeyPatch, value: str, level: int) -> None:
    monkeypatch.setenv("TILDE_LOG", value)
    Client(api_key="k").close()
    Client(api_key="k").close()
    ours = [h for h in logger.handlers if isinstance(h, _TildeLogHandler)]
    assert len(ours) == 1
    assert logger.level == level


def test_debug_log_never_shows_secrets(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TILDE_LOG", "debug")
    recorder = Recorder(
        httpx.Response(503),
        httpx.Response(200, json={}),
        httpx.Response(404, json={"message": "gone"}),
        httpx.Response(200),
    )
    client = make_client(recorder)
    client._get_json("/object/multipart/part", params={"upload_token": "upl-123", "path": "a"})
    with pytest.raises(NotFoundError) as info:
        client._get_json("/x", params={"token": "tok-789"})
    client._presigned_put("https://store.test/u?X-Amz-Signature=sig-456", b"data")
    err = capsys.readouterr().err
    assert "GET http://tilde.test/api/v1/object/multipart/part" in err
    assert "retrying" in err
    assert "-> 200" in err
    assert "authorization" in err.lower()
    for secret in SECRETS:
        assert secret not in err
        assert secret not in str(info.value)


def test_records_go_to_the_tilde_logger(make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = make_client(Recorder(refuse), max_retries=1)
    with caplog.at_level(logging.DEBUG, logger="tilde"), pytest.raises(TransportError) as info:
        client._get("/x", params={"upload_token": "upl-123"})
    assert caplog.records
    # Each layer logs to its own child of "tilde" (this exchange: tilde.core.http), so TILDE_LOG covers all.
    assert {record.name for record in caplog.records} == {"tilde.core.http"}
    text = caplog.text + str(info.value)
    assert "upl-123" not in text
    assert "tuk-secret" not in text
