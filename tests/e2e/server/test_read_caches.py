"""Listing pages and small objects of a commit are read once and served again; never stale, never to the
unauthorized.

The caches are keyed by the commit a request reads, so these tests check every way the answer must change: a
new commit, an old ``ref``, a session's staged rows, a repository deleted and made again under the same name,
a revoked key and a narrowed policy. Behaviour only: nothing here is timed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tilde.server import LocalServer


def _paths(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["path"] for item in response.json()["results"]]


def _count_listings(
    monkeypatch: pytest.MonkeyPatch, server: LocalServer, name: str = "list_objects"
) -> list[int]:
    engine = server.app.state.engine
    original = getattr(engine, name)
    calls = [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, name, counted)
    return calls


def test_a_page_of_the_head_is_encoded_once_and_a_commit_shows_at_once(
    server: LocalServer, repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_files({"a.txt": b"a", "b.txt": b"b"})
    listings = _count_listings(monkeypatch, server, "list_records")
    first = repo.api.get(repo.url("/objects"), params={"amount": 10})
    second = repo.api.get(repo.url("/objects"), params={"amount": 10})
    assert _paths(first) == ["a.txt", "b.txt"]
    assert second.content == first.content
    assert second.headers["content-type"] == "application/json"
    assert listings[0] == 1  # the second answer came from the cache
    repo.write_files({"c.txt": b"c"})
    assert _paths(repo.api.get(repo.url("/objects"), params={"amount": 10})) == ["a.txt", "b.txt", "c.txt"]
    assert listings[0] == 2


def test_a_page_of_an_old_commit_stays_that_commit(repo: Any) -> None:
    old = repo.write_files({"a.txt": b"a"})
    assert _paths(repo.api.get(repo.url("/objects"), params={"ref": old})) == ["a.txt"]
    repo.write_files({"b.txt": b"b"})
    assert _paths(repo.api.get(repo.url("/objects"), params={"ref": old})) == ["a.txt"]
    assert _paths(repo.api.get(repo.url("/objects"), params={"ref": old[:12]})) == ["a.txt"]
    assert _paths(repo.api.get(repo.url("/objects"))) == ["a.txt", "b.txt"]


def test_each_parameter_of_a_listing_is_part_of_its_page(repo: Any) -> None:
    repo.write_files({"d/1": b"1", "d/2": b"2", "e/1": b"3", "f": b"4"})
    listing = repo.url("/objects")
    assert _paths(repo.api.get(listing)) == ["d/1", "d/2", "e/1", "f"]
    assert _paths(repo.api.get(listing, params={"prefix": "d/"})) == ["d/1", "d/2"]
    assert _paths(repo.api.get(listing, params={"delimiter": "/"})) == ["d/", "e/", "f"]
    assert _paths(repo.api.get(listing, params={"after": "d/2"})) == ["e/1", "f"]
    page = repo.api.get(listing, params={"amount": 1})
    assert _paths(page) == ["d/1"]
    assert page.json()["pagination"] == {"has_more": True, "next_offset": "d/1", "max_per_page": 1000}


def test_a_session_listing_sees_each_staged_change(repo: Any) -> None:
    repo.write_files({"a.txt": b"a"})
    session_id = repo.new_session()
    listing = repo.url("/objects")
    assert _paths(repo.api.get(listing, params={"session_id": session_id})) == ["a.txt"]
    repo.put(session_id, "b.txt", b"b")
    assert _paths(repo.api.get(listing, params={"session_id": session_id})) == ["a.txt", "b.txt"]
    assert _paths(repo.api.get(listing)) == ["a.txt"]


def test_a_repository_made_again_under_its_name_lists_its_own_objects(api: httpx.Client, repo: Any) -> None:
    repo.write_files({"old.txt": b"old"})
    assert _paths(repo.api.get(repo.url("/objects"))) == ["old.txt"]
    assert api.delete(repo.url()).status_code in (200, 204)
    created = api.post(f"/organizations/{repo.org}/repositories", json={"name": repo.name})
    assert created.status_code == 201, created.text
    assert _paths(repo.api.get(repo.url("/objects"))) == []
    repo.write_files({"new.txt": b"new"})
    assert _paths(repo.api.get(repo.url("/objects"))) == ["new.txt"]


def test_a_cached_page_needs_a_valid_key_and_a_policy_allowing_it(
    api: httpx.Client, base_url: str, repo: Any, assert_error: Callable[..., Any]
) -> None:
    repo.write_files({"a.txt": b"a"})
    name = f"agent-{uuid.uuid4().hex[:8]}"
    agents = f"/organizations/{repo.org}/agents"
    assert api.post(agents, json={"name": name}).status_code == 201
    assert api.put(f"{agents}/{name}", json={"inline_policy": "*()"}).status_code == 200
    key = api.post(f"{agents}/{name}/auth/keys", json={"name": "k"}).json()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key['token']}"}) as agent:
        assert _paths(agent.get(repo.url("/objects"))) == ["a.txt"]
        assert _paths(agent.get(repo.url("/objects"))) == ["a.txt"]
        assert api.put(f"{agents}/{name}", json={"inline_policy": "GetObject()"}).status_code == 200
        assert_error(agent.get(repo.url("/objects")), 403, "forbidden")
        assert api.put(f"{agents}/{name}", json={"inline_policy": "*()"}).status_code == 200
        assert _paths(agent.get(repo.url("/objects"))) == ["a.txt"]
        assert api.delete(f"{agents}/{name}/auth/keys/{key['id']}").status_code in (200, 204)
        assert_error(agent.get(repo.url("/objects")), 401, "unauthorized")


def test_a_small_object_is_read_once_per_commit_and_a_commit_shows_at_once(
    server: LocalServer, repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_files({"a.txt": b"first"})
    stats = _count_listings(monkeypatch, server, "stat")
    first = repo.read("a.txt")
    second = repo.read("a.txt")
    assert first.content == second.content == b"first"
    without_id = [
        {k: v for k, v in response.headers.items() if k != "x-request-id"} for response in (first, second)
    ]
    assert without_id[0] == without_id[1]
    assert stats[0] == 1  # the second answer came from the cache
    repo.write_files({"a.txt": b"second"})
    assert repo.read("a.txt").content == b"second"
    assert stats[0] == 2


def test_a_cached_object_answers_ranges_and_head_like_a_fresh_read(repo: Any) -> None:
    old = repo.write_files({"r.bin": b"0123456789"})
    repo.read("r.bin")
    part = repo.api.get(repo.url("/object"), params={"path": "r.bin"}, headers={"Range": "bytes=2-4"})
    assert part.status_code == 206
    assert part.content == b"234"
    assert part.headers["content-range"] == "bytes 2-4/10"
    head = repo.api.head(repo.url("/object"), params={"path": "r.bin"})
    assert head.status_code == 200
    assert head.headers["content-length"] == "10"
    assert head.content == b""
    unsatisfiable = repo.api.get(
        repo.url("/object"), params={"path": "r.bin"}, headers={"Range": "bytes=10-"}
    )
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == "bytes */10"
    repo.write_files({"r.bin": b"new"})
    assert repo.read("r.bin", ref=old).content == b"0123456789"
    assert repo.read("r.bin").content == b"new"


def test_a_session_read_sees_its_staged_object(repo: Any) -> None:
    repo.write_files({"a.txt": b"committed"})
    assert repo.read("a.txt").content == b"committed"
    session_id = repo.new_session()
    repo.put(session_id, "a.txt", b"staged")
    assert repo.read("a.txt", session_id=session_id).content == b"staged"
    assert repo.read("a.txt").content == b"committed"


def test_a_cached_object_needs_a_policy_allowing_it(
    api: httpx.Client, base_url: str, repo: Any, assert_error: Callable[..., Any]
) -> None:
    repo.write_files({"a.txt": b"a"})
    name = f"agent-{uuid.uuid4().hex[:8]}"
    agents = f"/organizations/{repo.org}/agents"
    assert api.post(agents, json={"name": name}).status_code == 201
    assert api.put(f"{agents}/{name}", json={"inline_policy": "*()"}).status_code == 200
    key = api.post(f"{agents}/{name}/auth/keys", json={"name": "k"}).json()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key['token']}"}) as agent:
        for _ in range(2):
            assert agent.get(repo.url("/object"), params={"path": "a.txt"}).content == b"a"
        assert api.put(f"{agents}/{name}", json={"inline_policy": "ListObjects()"}).status_code == 200
        assert_error(agent.get(repo.url("/object"), params={"path": "a.txt"}), 403, "forbidden")
