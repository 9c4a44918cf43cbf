"""Presigned uploads, finalize checks and multipart uploads over real HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tilde.server import LocalServer

ExpectError = Callable[..., dict[str, Any]]


def with_param(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    params.update(changes)
    return urlunsplit(parts._replace(query=urlencode(params)))


def finalize(repo: Any, session: str, path: str, **body: Any) -> httpx.Response:
    response: httpx.Response = repo.api.post(
        repo.url("/object/finalize"), params={"session_id": session, "path": path}, json=body
    )
    return response


def test_upload_url_is_absolute_and_needs_no_auth(repo: Any, server: LocalServer) -> None:
    session = repo.new_session()
    staged = repo.stage(session, "f.bin")
    assert staged["upload_url"].startswith(server.endpoint_url + "/")
    response = httpx.put(staged["upload_url"], content=b"abc")
    assert response.status_code == 200
    assert response.headers["etag"] == '"' + hashlib.sha256(b"abc").hexdigest() + '"'


@pytest.mark.parametrize(
    "change",
    [
        {"path": "other.bin"},
        {"session": "00000000-0000-4000-8000-000000000000"},
        {"expires": "99999999999.000"},
        {"signature": "0" * 64},
        {"part": "2"},
    ],
)
def test_tampered_upload_url_is_403(repo: Any, assert_error: ExpectError, change: dict[str, str]) -> None:
    session = repo.new_session()
    staged = repo.stage(session, "f.bin")
    response = httpx.put(with_param(staged["upload_url"], **change), content=b"abc")
    assert_error(response, 403, "invalid_signature")
    assert_error(
        finalize(repo, session, "f.bin", upload_token=staged["upload_token"]), 404, "upload_not_found"
    )


def test_upload_url_with_other_upload_id_is_403(repo: Any, assert_error: ExpectError) -> None:
    session = repo.new_session()
    url = repo.stage(session, "f.bin")["upload_url"]
    parts = urlsplit(url)
    forged = urlunsplit(parts._replace(path="/uploads/" + "a" * 32))
    assert_error(httpx.put(forged, content=b"x"), 403, "invalid_signature")


def test_expired_upload_url_is_403(
    repo: Any, server: LocalServer, assert_error: ExpectError, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = repo.new_session()
    monkeypatch.setattr(server.app.state.config, "upload_url_ttl", -1.0)
    expired = repo.stage(session, "f.bin")
    monkeypatch.setattr(server.app.state.config, "upload_url_ttl", 3600.0)
    assert_error(httpx.put(expired["upload_url"], content=b"abc"), 403, "url_expired")
    fresh = repo.stage(session, "f.bin")
    assert httpx.put(fresh["upload_url"], content=b"abc").status_code == 200


def test_chunked_upload_without_length(repo: Any) -> None:
    session = repo.new_session()
    staged = repo.stage(session, "stream.bin")
    pieces = [bytes([i]) * 100_000 for i in range(100)]  # ~10 MB, crosses the server's write batch

    def body() -> Iterator[bytes]:
        yield from pieces

    uploaded = httpx.put(staged["upload_url"], content=body())
    assert uploaded.status_code == 200
    assert uploaded.request.headers.get("transfer-encoding") == "chunked"
    data = b"".join(pieces)
    assert uploaded.headers["etag"].strip('"') == hashlib.sha256(data).hexdigest()
    done = finalize(repo, session, "stream.bin", upload_token=staged["upload_token"])
    assert done.status_code == 201
    assert repo.read("stream.bin", session_id=session).content == data


def test_finalize_checks_size_and_checksum(repo: Any, assert_error: ExpectError) -> None:
    session = repo.new_session()
    staged = repo.stage(session, "f.bin")
    etag = httpx.put(staged["upload_url"], content=b"12345").headers["etag"]
    token = staged["upload_token"]
    assert_error(finalize(repo, session, "f.bin", upload_token=token, size_bytes=4), 400, "size_mismatch")
    assert_error(
        finalize(repo, session, "f.bin", upload_token=token, checksum="0" * 64), 400, "checksum_mismatch"
    )
    assert repo.api.get(repo.url("/changes"), params={"session_id": session}).json()["results"] == []
    quoted = finalize(repo, session, "f.bin", upload_token=token, checksum=etag, size_bytes=5)
    assert quoted.status_code == 201
    assert quoted.json() == {"path": "f.bin", "etag": etag}
    # The token is consumed by finalize: using it again is a conflict with the finished upload.
    assert_error(finalize(repo, session, "f.bin", upload_token=token), 409, "upload_consumed")


def test_finalize_token_is_bound_to_session_and_path(repo: Any, assert_error: ExpectError) -> None:
    session, other = repo.new_session(), repo.new_session()
    staged = repo.stage(session, "f.bin")
    httpx.put(staged["upload_url"], content=b"x")
    token = staged["upload_token"]
    assert_error(finalize(repo, session, "g.bin", upload_token=token), 400, "invalid_upload_token")
    assert_error(finalize(repo, other, "f.bin", upload_token=token), 400, "invalid_upload_token")
    assert_error(finalize(repo, session, "f.bin", upload_token="garbage"), 400, "invalid_upload_token")
    assert_error(finalize(repo, session, "f.bin"), 400, "invalid_upload_token")
    assert_error(
        repo.api.post(
            repo.url("/object/finalize"), params={"session_id": session, "path": "f.bin"}, content=b"{"
        ),
        400,
        "invalid_json",
    )


def test_upload_into_closed_session_is_409(repo: Any, assert_error: ExpectError) -> None:
    session = repo.new_session()
    staged = repo.stage(session, "f.bin")
    assert repo.api.delete(repo.url(f"/sessions/{session}")).status_code == 204
    assert_error(httpx.put(staged["upload_url"], content=b"x"), 409)
    assert_error(repo.api.put(repo.url("/object"), params={"session_id": session, "path": "f.bin"}), 409)


def multipart(repo: Any, session: str, path: str) -> dict[str, Any]:
    response = repo.api.post(repo.url("/object/multipart"), params={"session_id": session, "path": path})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def put_part(repo: Any, session: str, path: str, upload: dict[str, Any], number: int, data: bytes) -> str:
    params = {"session_id": session, "path": path, "part_number": number, **upload}
    url = repo.api.get(repo.url("/object/multipart/part"), params=params)
    assert url.status_code == 200, url.text
    response = httpx.put(url.json()["upload_url"], content=data)
    assert response.status_code == 200, response.text
    etag: str = response.headers["etag"]
    return etag


def complete(repo: Any, session: str, path: str, upload: dict[str, Any], parts: list[Any], size: int) -> Any:
    body = {**upload, "parts": parts, "content_type": "application/x-test", "size_bytes": size}
    return repo.api.post(
        repo.url("/object/multipart/complete"), params={"session_id": session, "path": path}, json=body
    )


def test_multipart_round_trip(repo: Any) -> None:
    session = repo.new_session()
    upload = multipart(repo, session, "big.bin")
    chunks = [b"a" * 300_000, b"b" * 300_000, b"c" * 1234]
    etags = [put_part(repo, session, "big.bin", upload, n + 1, c) for n, c in enumerate(chunks)]
    parts = [{"part_number": n + 1, "etag": e} for n, e in enumerate(etags)]
    done = complete(repo, session, "big.bin", upload, parts, sum(map(len, chunks)))
    assert done.status_code == 201, done.text
    assert done.json()["path"] == "big.bin"
    repo.commit_ok(session, "multipart")
    response = repo.read("big.bin")
    assert response.content == b"".join(chunks)
    assert response.headers["content-type"] == "application/x-test"
    assert response.headers["etag"] == done.json()["etag"]


def test_multipart_empty_stream(repo: Any) -> None:
    session = repo.new_session()
    upload = multipart(repo, session, "empty")
    assert complete(repo, session, "empty", upload, [], 0).status_code == 201
    assert repo.read("empty", session_id=session).content == b""


def test_multipart_bad_completions(repo: Any, assert_error: ExpectError) -> None:
    session = repo.new_session()
    upload = multipart(repo, session, "m.bin")
    e1 = put_part(repo, session, "m.bin", upload, 1, b"one")
    e2 = put_part(repo, session, "m.bin", upload, 2, b"two")
    reversed_parts = [{"part_number": 2, "etag": e2}, {"part_number": 1, "etag": e1}]
    assert_error(complete(repo, session, "m.bin", upload, reversed_parts, 6), 400)
    duplicated = [{"part_number": 1, "etag": e1}, {"part_number": 1, "etag": e1}]
    assert_error(complete(repo, session, "m.bin", upload, duplicated, 6), 400)
    missing = [{"part_number": 1, "etag": e1}, {"part_number": 3, "etag": e2}]
    assert_error(complete(repo, session, "m.bin", upload, missing, 6), 400)
    wrong_etag = [{"part_number": 1, "etag": e1}, {"part_number": 2, "etag": '"' + "0" * 64 + '"'}]
    assert_error(complete(repo, session, "m.bin", upload, wrong_etag, 6), 400)
    assert_error(complete(repo, session, "m.bin", upload, "nope", 6), 400)
    assert_error(complete(repo, session, "m.bin", upload, [{"part_number": "1", "etag": e1}], 3), 400)
    forged = {**upload, "upload_token": "x.1.y"}
    assert_error(complete(repo, session, "m.bin", forged, [{"part_number": 1, "etag": e1}], 3), 400)
    assert repo.api.get(repo.url("/changes"), params={"session_id": session}).json()["results"] == []
    # Unquoted etags are accepted too.
    good = [{"part_number": 1, "etag": e1.strip('"')}, {"part_number": 2, "etag": e2}]
    assert complete(repo, session, "m.bin", upload, good, 6).status_code == 201
    assert repo.read("m.bin", session_id=session).content == b"onetwo"


def test_multipart_part_number_and_abort(repo: Any, assert_error: ExpectError) -> None:
    session = repo.new_session()
    upload = multipart(repo, session, "m.bin")
    base = {"session_id": session, "path": "m.bin", **upload}
    for bad in ("0", "-1", "x", "10001"):
        response = repo.api.get(repo.url("/object/multipart/part"), params={**base, "part_number": bad})
        assert_error(response, 400)
    aborted = repo.api.delete(repo.url("/object/multipart"), params=base)
    assert aborted.status_code == 204
    assert_error(complete(repo, session, "m.bin", upload, [], 0), 404)


def test_finalize_metadata_is_exposed(repo: Any, assert_error: ExpectError) -> None:
    session = repo.new_session()
    staged = repo.stage(session, "m.txt")
    httpx.put(staged["upload_url"], content=b"m")
    bad = finalize(repo, session, "m.txt", upload_token=staged["upload_token"], metadata={"k": 1})
    assert_error(bad, 400, "invalid_field")
    done = finalize(repo, session, "m.txt", upload_token=staged["upload_token"], metadata={"owner": "ana"})
    assert done.status_code == 201
    head = repo.api.head(repo.url("/object"), params={"path": "m.txt", "session_id": session})
    assert head.headers["x-tilde-meta-owner"] == "ana"
    listing = repo.api.get(repo.url("/objects"), params={"session_id": session}).json()["results"]
    assert listing[0]["entry"]["metadata"] == {"owner": "ana"}
