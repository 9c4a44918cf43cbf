"""Object reads, listings, changes, copy and delete over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

ExpectError = Callable[..., dict[str, Any]]

BAD_PATHS = ["", "/leading", "a/../b", "..", "a/./b", "a//b", "nul\x00byte", "ctrl\x07char", "x/" * 512 + "x"]


def test_round_trip_and_headers(repo: Any) -> None:
    session = repo.new_session()
    staged = repo.put(session, "docs/readme.txt", b"hello world", "text/plain")
    assert staged["path"] == "docs/readme.txt"
    assert staged["etag"].startswith('"')
    in_session = repo.read("docs/readme.txt", session_id=session)
    assert in_session.content == b"hello world"
    assert repo.read("docs/readme.txt").status_code == 404  # not committed yet
    repo.commit_ok(session, "add readme")
    response = repo.read("docs/readme.txt")
    assert response.status_code == 200
    assert response.content == b"hello world"
    assert response.headers["etag"] == staged["etag"]
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["content-length"] == "11"
    head = repo.api.head(repo.url("/object"), params={"path": "docs/readme.txt"})
    assert head.status_code == 200
    assert head.headers["content-length"] == "11"
    assert head.headers["etag"] == staged["etag"]
    assert head.content == b""


@pytest.mark.parametrize(
    ("header", "status", "body", "content_range"),
    [
        ("bytes=0-4", 206, b"01234", "bytes 0-4/10"),
        ("bytes=3-", 206, b"3456789", "bytes 3-9/10"),
        ("bytes=-3", 206, b"789", "bytes 7-9/10"),
        ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
        ("bytes=-100", 206, b"0123456789", "bytes 0-9/10"),
        ("bytes=5-2", 200, b"0123456789", None),  # invalid: ignored
        ("items=0-1", 200, b"0123456789", None),  # other units: ignored
    ],
)
def test_range_reads(repo: Any, header: str, status: int, body: bytes, content_range: str | None) -> None:
    repo.write_files({"digits": b"0123456789"})
    response = repo.api.get(repo.url("/object"), params={"path": "digits"}, headers={"Range": header})
    assert response.status_code == status
    assert response.content == body
    assert response.headers.get("content-range") == content_range
    assert response.headers["content-length"] == str(len(body))


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0"])
def test_unsatisfiable_range_is_416(repo: Any, assert_error: ExpectError, header: str) -> None:
    repo.write_files({"digits": b"0123456789"})
    response = repo.api.get(repo.url("/object"), params={"path": "digits"}, headers={"Range": header})
    assert_error(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == "bytes */10"


def test_large_object_streams_intact(repo: Any) -> None:
    data = bytes(range(256)) * (12 * 1024 + 7)  # ~3 MiB, not a multiple of the read chunk
    repo.write_files({"big.bin": data})
    with repo.api.stream("GET", repo.url("/object"), params={"path": "big.bin"}) as response:
        received = b"".join(response.iter_bytes())
    assert received == data
    tail = repo.api.get(repo.url("/object"), params={"path": "big.bin"}, headers={"Range": "bytes=2097150-"})
    assert tail.content == data[2097150:]


def test_ref_reads_an_older_commit(repo: Any) -> None:
    first = repo.write_files({"v.txt": b"one"})
    repo.write_files({"v.txt": b"two", "w.txt": b"new"})
    assert repo.read("v.txt").content == b"two"
    assert repo.read("v.txt", ref=first).content == b"one"
    head = repo.api.head(repo.url("/object"), params={"path": "v.txt", "ref": first})
    assert head.headers["content-length"] == "3"
    listing = repo.api.get(repo.url("/objects"), params={"ref": first}).json()["results"]
    assert [e["path"] for e in listing] == ["v.txt"]


def test_listing_with_delimiter_prefix_and_pages(repo: Any) -> None:
    files = {f"data/{i:02d}.csv": b"x" * i for i in range(5)}
    files.update({"data/sub/deep.txt": b"d", "readme.md": b"r", "zeta/z": b"z"})
    repo.write_files(files)
    top = repo.api.get(repo.url("/objects"), params={"delimiter": "/"}).json()["results"]
    assert [(e["path"], e["type"]) for e in top] == [
        ("data/", "prefix"),
        ("readme.md", "object"),
        ("zeta/", "prefix"),
    ]
    assert "entry" not in top[0]
    entry = top[1]["entry"]
    assert entry["size"] == 1
    assert entry["e_tag"].startswith('"')
    assert entry["content_type"] == "application/octet-stream"
    assert entry["last_modified"].endswith("Z")
    nested = repo.api.get(repo.url("/objects"), params={"prefix": "data/", "delimiter": "/"}).json()[
        "results"
    ]
    assert [e["path"] for e in nested] == [f"data/{i:02d}.csv" for i in range(5)] + ["data/sub/"]
    seen: list[str] = []
    params: dict[str, Any] = {"amount": 3}
    while True:
        page = repo.api.get(repo.url("/objects"), params=params).json()
        seen += [e["path"] for e in page["results"]]
        if not page["pagination"]["has_more"]:
            break
        params["after"] = page["pagination"]["next_offset"]
    assert seen == sorted(files)


def test_changes_copy_and_delete(repo: Any, assert_error: ExpectError) -> None:
    repo.write_files({"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    session = repo.new_session()
    copied = repo.api.post(
        repo.url("/object/copy"),
        params={"session_id": session, "source_path": "a.txt", "destination_path": "copy/a.txt"},
    )
    assert copied.status_code == 201
    assert copied.json() == {"source_path": "a.txt", "destination_path": "copy/a.txt"}
    assert (
        repo.api.delete(repo.url("/object"), params={"session_id": session, "path": "b.txt"}).status_code
        == 204
    )
    missing = repo.api.delete(repo.url("/object"), params={"session_id": session, "path": "nope.txt"})
    assert_error(missing, 404)
    many = repo.api.post(
        repo.url("/objects/delete"), params={"session_id": session}, json={"paths": ["c.txt", "zz"]}
    )
    assert many.status_code == 200
    assert many.json() == {"deleted": 1}
    changes = repo.api.get(repo.url("/changes"), params={"session_id": session}).json()["results"]
    by_path = {c["path"]: c for c in changes}
    assert set(by_path) == {"b.txt", "c.txt", "copy/a.txt"}
    assert "entry" not in by_path["b.txt"]
    assert by_path["copy/a.txt"]["entry"]["size"] == 1
    repo.commit_ok(session, "shuffle")
    listing = repo.api.get(repo.url("/objects")).json()["results"]
    assert [e["path"] for e in listing] == ["a.txt", "copy/a.txt"]
    assert repo.read("copy/a.txt").content == b"a"
    missing_source = repo.api.post(
        repo.url("/object/copy"),
        params={"session_id": repo.new_session(), "source_path": "gone", "destination_path": "x"},
    )
    assert_error(missing_source, 404)


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_paths_are_rejected_everywhere(repo: Any, assert_error: ExpectError, path: str) -> None:
    session = repo.new_session()
    calls = [
        repo.api.get(repo.url("/object"), params={"path": path}),
        repo.api.head(repo.url("/object"), params={"path": path}),
        repo.api.put(repo.url("/object"), params={"session_id": session, "path": path}),
        repo.api.delete(repo.url("/object"), params={"session_id": session, "path": path}),
        repo.api.post(repo.url("/object/multipart"), params={"session_id": session, "path": path}),
        repo.api.post(
            repo.url("/object/copy"),
            params={"session_id": session, "source_path": "a", "destination_path": path},
        ),
        repo.api.post(
            repo.url("/objects/delete"), params={"session_id": session}, json={"paths": ["ok", path]}
        ),
    ]
    for response in calls:
        assert response.status_code == 400, (response.request.method, response.text)
        if response.request.method != "HEAD":
            assert_error(response, 400)
    assert repo.api.get(repo.url("/changes"), params={"session_id": session}).json()["results"] == []


def test_delete_many_bounds(repo: Any, assert_error: ExpectError) -> None:
    session = repo.new_session()
    url = repo.url("/objects/delete")
    assert_error(repo.api.post(url, params={"session_id": session}, json={"paths": []}), 400)
    too_many = [f"p{i}" for i in range(1001)]
    assert_error(repo.api.post(url, params={"session_id": session}, json={"paths": too_many}), 400)
    assert_error(repo.api.post(url, params={"session_id": session}, json={"paths": "a"}), 400)
    assert_error(repo.api.post(url, params={"session_id": session}, json={"paths": [1]}), 400)
    ok = repo.api.post(url, params={"session_id": session}, json={"paths": [f"p{i}" for i in range(1000)]})
    assert ok.json() == {"deleted": 0}


def test_unknown_ids_are_404(repo: Any, assert_error: ExpectError) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_error(repo.api.get(repo.url("/objects"), params={"session_id": unknown}), 404)
    assert_error(repo.api.get(repo.url("/changes"), params={"session_id": unknown}), 404)
    assert_error(repo.api.put(repo.url("/object"), params={"session_id": unknown, "path": "a"}), 404)
    assert_error(repo.read("a", session_id=unknown), 404)
    assert_error(repo.read("a", ref="f" * 64), 404)
    assert_error(repo.read("never-written"), 404, "not_found")
    assert_error(repo.api.get(repo.url("/changes")), 400, "missing_parameter")
    assert_error(repo.api.get("/organizations/nope-org/repositories/r/objects"), 404)
