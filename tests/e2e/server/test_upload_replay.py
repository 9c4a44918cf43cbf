"""Upload targets are single-use, size-capped and short-lived (over real HTTP to a real server).

A finalized (or completed) upload can neither take more bytes nor be finalized again, so a leaked URL or token
cannot replace what was staged; a declared size caps the body as soon as the excess is known; upload tokens
expire with the URLs.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

if TYPE_CHECKING:
    from tests.e2e.server.conftest import RepoAPI
    from tilde.server import LocalServer

ExpectError = Callable[..., dict[str, Any]]


def _finalize(repo: RepoAPI, session: str, path: str, **body: Any) -> httpx.Response:
    return repo.api.post(
        repo.url("/object/finalize"), params={"session_id": session, "path": path}, json=body
    )


def _stage(repo: RepoAPI, session: str, path: str, **params: Any) -> httpx.Response:
    return repo.api.put(repo.url("/object"), params={"session_id": session, "path": path, **params})


def _upload(repo: RepoAPI, session: str, path: str, data: bytes) -> tuple[dict[str, Any], httpx.Response]:
    """Stage, PUT and finalize ``data``; return the staged URLs and the finalize response."""
    staged = repo.stage(session, path)
    put = httpx.put(staged["upload_url"], content=data)
    assert put.status_code == 200, put.text
    done = _finalize(repo, session, path, upload_token=staged["upload_token"], size_bytes=len(data))
    assert done.status_code == 201, done.text
    return staged, done


def _raw_put(url: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """Send a PUT with exactly these headers (and body) on a raw socket; return the status and response body.

    Lets a request announce more bytes than it sends: a server that answers without waiting for them has not
    tried to buffer the body.
    """
    parts = urlsplit(url)
    lines = [f"PUT {parts.path}?{parts.query} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body)
        received = b""
        while b"\r\n\r\n" not in received or not _complete(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


def _complete(received: bytes) -> bool:
    head, _, payload = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(payload) >= int(value)
    return False


# -- single use -----------------------------------------------------------------------------------


def test_put_after_finalize_is_409_and_the_staged_object_keeps_its_bytes(
    repo: RepoAPI, assert_error: ExpectError
) -> None:
    session = repo.new_session()
    staged = repo.stage(session, "f.bin")
    # Single use means one finalize, not one PUT: the body may be sent again until then.
    assert httpx.put(staged["upload_url"], content=b"first try").status_code == 200
    assert httpx.put(staged["upload_url"], content=b"original").status_code == 200
    done = _finalize(repo, session, "f.bin", upload_token=staged["upload_token"])
    assert done.status_code == 201, done.text
    assert_error(httpx.put(staged["upload_url"], content=b"replaced"), 409, "upload_consumed")
    read = repo.read("f.bin", session_id=session)
    assert read.content == b"original"
    assert read.headers["etag"] == done.json()["etag"]


def test_finalize_twice_is_409_even_after_a_replayed_put(repo: RepoAPI, assert_error: ExpectError) -> None:
    session = repo.new_session()
    staged, _ = _upload(repo, session, "f.bin", b"original")
    token = staged["upload_token"]
    assert_error(_finalize(repo, session, "f.bin", upload_token=token), 409, "upload_consumed")
    httpx.put(staged["upload_url"], content=b"replaced")  # a replayed PUT: refused, and must change nothing
    assert_error(_finalize(repo, session, "f.bin", upload_token=token), 409, "upload_consumed")
    commit_id = repo.commit_ok(session)
    assert repo.read("f.bin", ref=commit_id).content == b"original"


def test_concurrent_finalize_calls_stage_once(repo: RepoAPI, server: LocalServer) -> None:
    session = repo.new_session()
    staged = repo.stage(session, "f.bin")
    assert httpx.put(staged["upload_url"], content=b"once").status_code == 200
    url = server.endpoint_url + "/api/v1" + repo.url("/object/finalize")
    headers = {"Authorization": f"Bearer {server.api_key}"}
    barrier = threading.Barrier(8)

    def finalize_once() -> int:
        with httpx.Client(headers=headers, timeout=60) as http:
            barrier.wait()
            response = http.post(
                url,
                params={"session_id": session, "path": "f.bin"},
                json={"upload_token": staged["upload_token"]},
            )
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(lambda _: finalize_once(), range(8)))
    assert statuses == [201] + [409] * 7


def _multipart(repo: RepoAPI, session: str, path: str, **params: Any) -> dict[str, Any]:
    response = repo.api.post(
        repo.url("/object/multipart"), params={"session_id": session, "path": path, **params}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _part_url(repo: RepoAPI, session: str, path: str, upload: dict[str, Any], number: int) -> httpx.Response:
    params = {"session_id": session, "path": path, "part_number": number, **upload}
    return repo.api.get(repo.url("/object/multipart/part"), params=params)


def _complete_upload(repo: RepoAPI, session: str, path: str, upload: dict[str, Any], etags: list[str]) -> Any:
    parts = [{"part_number": n + 1, "etag": etag} for n, etag in enumerate(etags)]
    body = {**upload, "parts": parts, "content_type": "application/octet-stream"}
    return repo.api.post(
        repo.url("/object/multipart/complete"), params={"session_id": session, "path": path}, json=body
    )


@pytest.mark.parametrize("part_size", [None, "8"], ids=["blob-per-part", "in-place"])
def test_completed_multipart_upload_is_consumed(
    repo: RepoAPI, assert_error: ExpectError, part_size: str | None
) -> None:
    session = repo.new_session()
    upload = _multipart(repo, session, "m.bin", **({"part_size": part_size} if part_size else {}))
    urls = [_part_url(repo, session, "m.bin", upload, n).json()["upload_url"] for n in (1, 2)]
    bodies = (b"12345678", b"tail")
    etags = [httpx.put(url, content=data).headers["etag"] for url, data in zip(urls, bodies, strict=True)]
    done = _complete_upload(repo, session, "m.bin", upload, etags)
    assert done.status_code == 201, done.text
    # The part URLs, the token and the upload id are all spent.
    assert_error(httpx.put(urls[1], content=b"evil"), 409, "upload_consumed")
    assert_error(_complete_upload(repo, session, "m.bin", upload, etags), 409, "upload_consumed")
    assert_error(_part_url(repo, session, "m.bin", upload, 3), 409, "upload_consumed")
    params = {"session_id": session, "path": "m.bin", **upload}
    assert_error(repo.api.delete(repo.url("/object/multipart"), params=params), 409, "upload_consumed")
    assert repo.read("m.bin", session_id=session).content == b"12345678tail"


# -- size caps -------------------------------------------------------------------------------------


def test_declared_size_caps_the_body_with_413(repo: RepoAPI, assert_error: ExpectError) -> None:
    session = repo.new_session()
    staged = _stage(repo, session, "f.bin", size_bytes=10)
    assert staged.status_code == 200, staged.text
    url, token = staged.json()["upload_url"], staged.json()["upload_token"]
    assert_error(httpx.put(url, content=b"x" * 11), 413, "upload_too_large")

    def chunked() -> Iterator[bytes]:
        yield b"x" * 6
        yield b"y" * 6

    streamed = httpx.put(url, content=chunked())
    assert streamed.request.headers.get("transfer-encoding") == "chunked"
    assert_error(streamed, 413, "upload_too_large")
    assert_error(httpx.put(url, content=b"short"), 400, "size_mismatch")
    # Nothing refused was kept: finalize still finds nothing uploaded, and the exact size goes through.
    assert_error(_finalize(repo, session, "f.bin", upload_token=token), 404, "upload_not_found")
    ok = httpx.put(url, content=b"0123456789")
    assert ok.status_code == 200
    assert ok.headers["etag"] == '"' + hashlib.sha256(b"0123456789").hexdigest() + '"'
    assert _finalize(repo, session, "f.bin", upload_token=token).status_code == 201


def test_oversize_content_length_is_refused_before_any_body_byte(repo: RepoAPI) -> None:
    """A 100 GiB ``Content-Length`` against a 1 KiB declaration is answered at once, with no body sent."""
    session = repo.new_session()
    url = _stage(repo, session, "f.bin", size_bytes=1024).json()["upload_url"]
    status, payload = _raw_put(url, {"Content-Length": str(100 << 30)})
    assert status == 413
    assert b'"upload_too_large"' in payload


def test_part_over_the_declared_part_size_is_413(repo: RepoAPI) -> None:
    session = repo.new_session()
    upload = _multipart(repo, session, "m.bin", part_size="1024")
    url = _part_url(repo, session, "m.bin", upload, 1).json()["upload_url"]
    status, payload = _raw_put(url, {"Content-Length": str(100 << 30)})
    assert status == 413
    assert b'"part_too_large"' in payload


@pytest.mark.parametrize("value", ["-1", "ten", "1e3", str(1 << 63), "\u00b2"])
def test_bad_declared_size_is_400(repo: RepoAPI, assert_error: ExpectError, value: str) -> None:
    session = repo.new_session()
    assert_error(_stage(repo, session, "f.bin", size_bytes=value), 400, "invalid_parameter")


# -- token lifetime --------------------------------------------------------------------------------


def test_upload_token_expires_with_the_urls(
    repo: RepoAPI, server: LocalServer, assert_error: ExpectError, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = repo.new_session()
    monkeypatch.setattr(server.app.state.config, "upload_url_ttl", -1.0)
    staged = repo.stage(session, "f.bin")
    upload = _multipart(repo, session, "m.bin")
    monkeypatch.setattr(server.app.state.config, "upload_url_ttl", 3600.0)
    assert_error(
        _finalize(repo, session, "f.bin", upload_token=staged["upload_token"]), 400, "upload_token_expired"
    )
    assert_error(_part_url(repo, session, "m.bin", upload, 1), 400, "upload_token_expired")


def test_upload_token_lives_no_longer_than_the_configured_url_lifetime(
    repo: RepoAPI, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token's signed expiry is the URL's, not a week later."""
    session = repo.new_session()
    monkeypatch.setattr(server.app.state.config, "upload_url_ttl", 600.0)
    staged = repo.stage(session, "f.bin")
    url_expiry = float(dict(parse_qsl(urlsplit(staged["upload_url"]).query))["expires"])
    token_expiry = int(staged["upload_token"].rsplit(".", 2)[1])
    assert abs(token_expiry - url_expiry) <= 1
