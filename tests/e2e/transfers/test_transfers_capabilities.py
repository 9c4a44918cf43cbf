"""Client-only corner cases of capability discovery, on a mock transport (our server never sends these)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tilde.data import Client
from tilde.data._capabilities import capabilities

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler) -> Client:
    http = httpx.Client(base_url="http://tilde.test/api/v1", transport=httpx.MockTransport(handler))
    return Client(endpoint_url="http://tilde.test", api_key="k", http_client=http, max_retries=0)


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"batch_upload": None},
        {
            "batch_upload": {
                "path": "/no/placeholders",
                "max_files": 1,
                "max_file_bytes": 1,
                "max_body_bytes": 1,
            }
        },
        {
            "batch_upload": {
                "path": "/o/{org}/r/{repo}/b",
                "max_files": 0,
                "max_file_bytes": 1,
                "max_body_bytes": 1,
            }
        },
        {"batch_upload": {"path": "/o/{org}/r/{repo}/b", "max_files": True, "max_file_bytes": 1}},
        {"batch_download": {"path": "/o/{org}/r/{repo}/d", "max_files": "many"}},
    ],
)
def test_malformed_advertisements_mean_no_batches(document: dict[str, object]) -> None:
    with _client(lambda request: httpx.Response(200, json=document)) as client:
        found = capabilities(client)
    assert found.batch_upload is None
    assert found.batch_download is None


def test_a_missing_document_is_remembered_and_other_failures_are_not() -> None:
    calls: list[str] = []

    def handler(status: int) -> Handler:
        def answer(request: httpx.Request) -> httpx.Response:
            calls.append(request.url.path)
            return httpx.Response(status, json={"message": "no"})

        return answer

    with _client(handler(404)) as client:
        assert capabilities(client).batch_upload is None
        assert capabilities(client).batch_upload is None
    assert len(calls) == 1
    calls.clear()
    with _client(handler(503)) as client:
        assert capabilities(client).batch_upload is None
        assert capabilities(client).batch_upload is None
    assert len(calls) == 2


def test_a_batch_route_answering_405_falls_back_and_is_forgotten(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "b.txt").write_bytes(b"b")
    seen: list[tuple[str, str]] = []
    advertised = {
        "batch_upload": {
            "path": "/organizations/{org}/repositories/{repo}/objects:batch",
            "max_files": 100,
            "max_file_bytes": 1000,
            "max_body_bytes": 100_000,
        }
    }

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        seen.append((request.method, path.rsplit("/", 1)[-1]))
        if path.endswith("/capabilities"):
            return httpx.Response(200, json=advertised)
        if path.endswith("objects:batch"):
            return httpx.Response(405, json={"message": "method not allowed"})
        if request.method == "PUT" and path.endswith("/object"):
            return httpx.Response(200, json={"upload_url": "http://tilde.test/up/1", "upload_token": "t"})
        if path.endswith("/up/1"):
            return httpx.Response(200, headers={"ETag": '"e"'})
        if path.endswith("/finalize"):
            return httpx.Response(201, json={"path": request.url.params["path"], "etag": '"e"'})
        return httpx.Response(500)

    with _client(handler) as client:
        objects = client.repository("acme/data").attach("6f1c8a52-3f7e-4d2b-9a4e-2b1e0c9d7a11").objects
        first = objects.upload_folder(tmp_path)
        second = objects.upload_folder(tmp_path)
    assert first.paths == second.paths == ["a.txt", "b.txt"]
    assert seen.count(("POST", "objects:batch")) == 1  # the 405 is remembered
    assert seen.count(("GET", "capabilities")) == 1
    assert seen.count(("POST", "finalize")) == 4
