"""The small-request path: verified keys are remembered (and forgotten on revocation), small objects are read
without worker-thread hand-offs. Behaviour only: nothing here is timed."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import httpx
import pytest

from tilde.server import LocalServer


def _counting(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> list[int]:
    """Replace ``target.name`` with a wrapper counting its calls; returns the one-element counter."""
    calls = [0]
    original: Callable[..., Any] = getattr(target, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, counted)
    return calls


def test_a_verified_key_is_remembered_and_forgotten_when_revoked(
    server: LocalServer,
    api: httpx.Client,
    base_url: str,
    org_name: str,
    monkeypatch: pytest.MonkeyPatch,
    assert_error: Callable[..., Any],
) -> None:
    name = f"agent-{uuid.uuid4().hex[:8]}"
    assert api.post(f"/organizations/{org_name}/agents", json={"name": name}).status_code == 201
    keys = f"/organizations/{org_name}/agents/{name}/auth/keys"
    created = api.post(keys, json={"name": "k"})
    assert created.status_code == 201, created.text
    token, key_id = created.json()["token"], created.json()["id"]
    lookups = _counting(monkeypatch, server.app.state.registry, "lookup_token")
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as agent:
        for _ in range(3):
            assert agent.get(f"/organizations/{org_name}").status_code == 200
        # Verified against its salted hash once; the next requests found it remembered.
        assert lookups[0] == 1
        assert api.delete(f"{keys}/{key_id}").status_code in (200, 204)
        assert_error(agent.get(f"/organizations/{org_name}"), 401, "unauthorized")
        assert_error(agent.get(f"/organizations/{org_name}"), 401, "unauthorized")


def test_a_wrong_token_is_never_remembered(
    server: LocalServer, base_url: str, org_name: str, assert_error: Callable[..., Any]
) -> None:
    real = server.api_key
    forged = real[:-4] + ("aaaa" if not real.endswith("aaaa") else "bbbb")
    with httpx.Client(base_url=base_url) as client:
        good = client.get(f"/organizations/{org_name}", headers={"Authorization": f"Bearer {real}"})
        assert good.status_code == 200
        bad = client.get(f"/organizations/{org_name}", headers={"Authorization": f"Bearer {forged}"})
        assert_error(bad, 401, "unauthorized")


def _object_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record worker-thread hand-offs that open, read or look up an object."""
    seen: list[str] = []
    original = anyio.to_thread.run_sync

    async def recording(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        inner = func.func if isinstance(func, functools.partial) else func
        if inner in (os.open, os.pread) or getattr(inner, "__name__", "") == "stat":
            seen.append(getattr(inner, "__name__", repr(inner)))
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", recording)
    return seen


def test_a_small_object_is_read_without_worker_threads(repo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytes(range(256)) * 4
    repo.write_files({"small.bin": data})
    seen = _object_reads(monkeypatch)
    whole = repo.read("small.bin")
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-length"] == str(len(data))
    part = repo.api.get(repo.url("/object"), params={"path": "small.bin"}, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert seen == []


def test_a_large_object_still_streams_from_a_worker_thread(
    repo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(256 * 1024)
    repo.write_files({"large.bin": data})
    seen = _object_reads(monkeypatch)
    response = repo.read("large.bin")
    assert response.status_code == 200
    assert response.content == data
    assert "pread" in seen


def test_an_empty_object_reads_as_empty(repo: Any) -> None:
    repo.write_files({"empty.bin": b""})
    response = repo.read("empty.bin")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"
