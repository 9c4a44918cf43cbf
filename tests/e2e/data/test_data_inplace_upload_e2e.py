"""Multipart uploads against a real server, with and without the ``part_size`` hint on initiate.

With the hint (what this SDK sends) the server writes every part in place into one file and never stores the
parts as blobs of their own; without it (the published client, raw HTTP) each part is a blob and completing
concatenates them. Both must read back byte-identical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tilde.data import Client, ReadOnlyObjects

if TYPE_CHECKING:
    from tilde.server import LocalServer

MIB = 1024 * 1024
PART = 4 * MIB
SIZE = 100 * MIB + 12_345  # 25 full parts and a short last one


def _block(index: int, length: int) -> bytes:
    seed = hashlib.sha256(index.to_bytes(8, "big")).digest()
    return (seed * (length // len(seed) + 1))[:length]


def _parts(total: int = SIZE) -> Iterator[bytes]:
    """Deterministic part-sized blocks that differ from each other, never holding the whole object."""
    for index, offset in enumerate(range(0, total, PART)):
        yield _block(index, min(PART, total - offset))


def _is_blob(server: LocalServer, data: bytes) -> bool:
    digest = hashlib.sha256(data).hexdigest()
    return (server.data_dir / "blobs" / digest[:2] / digest[2:4] / digest).is_file()


def _upload_files(server: LocalServer) -> list[Path]:
    return list((server.data_dir / "blobs" / "tmp").glob("u-*"))


def _read_back(client: Client, repo_path: str, path: str) -> tuple[int, str]:
    repo = client.repository(repo_path)
    objects = ReadOnlyObjects(client, repo.org, repo.name)
    digest = hashlib.sha256()
    received = 0
    with objects.get(path, cache=False) as reader:
        for chunk in reader.iter_bytes(MIB):
            digest.update(chunk)
            received += len(chunk)
    return received, digest.hexdigest()


def _expected() -> str:
    digest = hashlib.sha256()
    for part in _parts():
        digest.update(part)
    return digest.hexdigest()


@pytest.mark.slow
def test_sdk_upload_with_small_parts_is_written_in_place(
    server: LocalServer, server_backend: str, repo_path: str
) -> None:
    # A cluster's replicas have data directories of their own: the upload's round trip is checked there, the
    # local store's files only on a single server.
    local_files = server_backend != "cluster"
    files_before = _upload_files(server) if local_files else []
    with Client(
        endpoint_url=server.endpoint_url,
        api_key=server.api_key,
        multipart_part_size=PART,
        max_parts_in_flight=4,
    ) as client:
        with client.repository(repo_path).session() as session:
            # An iterator has no known size: multipart, with parts cut at exactly PART bytes.
            result = session.objects.put("inplace/blob.bin", _parts())
            session.commit("in place")
        assert client._multipart_unsupported is False
        assert result.etag.strip('"') == _expected()
        assert _read_back(client, repo_path, "inplace/blob.bin") == (SIZE, _expected())
    if local_files:
        # No part was stored as a blob of its own, and the upload's file became the object's blob.
        assert not any(_is_blob(server, part) for part in _parts())
        assert _upload_files(server) == files_before


def _repo_api(server: LocalServer, repo_path: str) -> httpx.Client:
    org, name = repo_path.split("/")
    return httpx.Client(
        base_url=f"{server.endpoint_url.rstrip('/')}/api/v1/organizations/{org}/repositories/{name}",
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=120,
    )


def _initiate(api: httpx.Client, where: dict[str, str], **extra: str) -> dict[str, Any]:
    started = api.post("/object/multipart", params={**where, **extra})
    assert started.status_code == 200, started.text
    ids: dict[str, Any] = started.json()
    return ids


def _put_part(api: httpx.Client, where: dict[str, str], ids: dict[str, Any], number: int, data: Any) -> Any:
    target = api.get("/object/multipart/part", params={**where, **ids, "part_number": number})
    assert target.status_code == 200, target.text
    return httpx.put(target.json()["upload_url"], content=data, timeout=120)


def _complete(
    api: httpx.Client, where: dict[str, str], ids: dict[str, Any], etags: list[str], size: int
) -> httpx.Response:
    parts = [{"part_number": number, "etag": etag} for number, etag in enumerate(etags, start=1)]
    body = {**ids, "parts": parts, "content_type": "application/octet-stream", "size_bytes": size}
    return api.post("/object/multipart/complete", params=where, json=body)


@pytest.mark.backends("local")  # part files and SHA-256 part ETags of the local blob store
@pytest.mark.slow
def test_raw_http_upload_without_the_hint_keeps_one_blob_per_part(
    server: LocalServer, repo_path: str
) -> None:
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        session = client.repository(repo_path).session()
        where = {"session_id": session.session_id, "path": "raw/blob.bin"}
        with _repo_api(server, repo_path) as api:
            ids = _initiate(api, where)
            etags = []
            for number, data in enumerate(_parts(), start=1):
                response = _put_part(api, where, ids, number, data)
                assert response.status_code == 200, response.text
                assert response.headers["etag"] == '"' + hashlib.sha256(data).hexdigest() + '"'
                etags.append(response.headers["etag"])
            done = _complete(api, where, ids, etags, SIZE)
            assert done.status_code == 201, done.text
        session.commit("raw")
        assert done.json()["etag"].strip('"') == _expected()
        assert _read_back(client, repo_path, "raw/blob.bin") == (SIZE, _expected())
    # The parts went through the blob-per-part path.
    assert all(_is_blob(server, part) for part in _parts())


@pytest.mark.backends("local")  # part files and SHA-256 part ETags of the local blob store
def test_hinted_upload_rejects_oversized_parts_and_bad_hints(server: LocalServer, repo_path: str) -> None:
    files_before = _upload_files(server)
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        session = client.repository(repo_path).session()
        where = {"session_id": session.session_id, "path": "small.bin"}
        with _repo_api(server, repo_path) as api:
            for bad in ("0", "-1", "big", "\u00b2"):
                refused = api.post("/object/multipart", params={**where, "part_size": bad})
                assert refused.status_code == 400, refused.text
                assert refused.json()["code"] == "invalid_parameter"
            ids = _initiate(api, where, part_size="10")
            declared = _put_part(api, where, ids, 1, b"x" * 11)
            assert declared.status_code == 413, declared.text
            assert declared.json()["code"] == "part_too_large"

            def chunked() -> Iterator[bytes]:
                yield b"x" * 6
                yield b"y" * 6

            streamed = _put_part(api, where, ids, 1, chunked())
            assert streamed.status_code == 413, streamed.text
            assert streamed.json()["code"] == "part_too_large"
            first = _put_part(api, where, ids, 1, b"0123456789")
            last = _put_part(api, where, ids, 2, b"end")
            short = _complete(api, where, ids, [last.headers["etag"], first.headers["etag"]], 13)
            assert short.status_code == 400, short.text
            done = _complete(api, where, ids, [first.headers["etag"], last.headers["etag"]], 13)
            assert done.status_code == 201, done.text
            assert done.json()["etag"] == '"' + hashlib.sha256(b"0123456789end").hexdigest() + '"'

            gone = {**where, "path": "gone.bin"}
            aborted = _initiate(api, gone, part_size="10")
            assert _put_part(api, gone, aborted, 1, b"abc").status_code == 200
            assert len(_upload_files(server)) == len(files_before) + 1
            assert api.delete("/object/multipart", params={**gone, **aborted}).status_code == 204
            assert _upload_files(server) == files_before
        assert session.objects.get("small.bin").read() == b"0123456789end"
        session.rollback()


@pytest.mark.backends("local")  # only a server assembling parts in place asks for few at once
def test_an_in_place_upload_asks_for_few_parts_at_once(server: LocalServer, repo_path: str) -> None:
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        session = client.repository(repo_path).session()
        with _repo_api(server, repo_path) as api:
            hinted = _initiate(api, {"session_id": session.session_id, "path": "a.bin"}, part_size=str(PART))
            plain = _initiate(api, {"session_id": session.session_id, "path": "b.bin"})
    assert hinted["parts_in_flight"] == 2
    assert "parts_in_flight" not in plain
