"""`LocalServer` lifecycle: temporary data, persistence across restarts, the key helper."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from tilde.server import LocalServer, ServerConfig


def test_temporary_data_dir_is_removed_on_stop() -> None:
    with LocalServer() as server:
        data_dir = server.data_dir
        assert data_dir.is_dir()
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        assert httpx.get(server.endpoint_url + "/healthz").json() == {"status": "ok"}
    assert not data_dir.exists()


def test_data_and_admin_key_survive_a_restart(tmp_path: Path) -> None:
    with LocalServer(data_dir=tmp_path) as first:
        key = first.api_key
        headers = {"Authorization": f"Bearer {key}"}
        base = first.endpoint_url + "/api/v1"
        assert httpx.post(base + "/organizations", json={"name": "keep"}, headers=headers).status_code == 201
        assert httpx.post(
            base + "/organizations/keep/repositories", json={"name": "r1"}, headers=headers
        ).is_success
        session = httpx.post(base + "/organizations/keep/repositories/r1/sessions", headers=headers).json()
    with LocalServer(data_dir=tmp_path) as second:
        assert second.api_key == key
        base = second.endpoint_url + "/api/v1"
        names = [o["name"] for o in httpx.get(base + "/organizations", headers=headers).json()["results"]]
        assert names == ["keep"]
        # A session opened before the restart can be continued (attach from another process).
        staged = httpx.put(
            base + "/organizations/keep/repositories/r1/object",
            params={"session_id": session["session_id"], "path": "a"},
            headers=headers,
        )
        assert staged.status_code == 200
    assert tmp_path.is_dir()


def test_restart_collects_unreferenced_blobs_but_keeps_pending_uploads(tmp_path: Path) -> None:
    def blob_file(data: bytes) -> Path:
        digest = hashlib.sha256(data).hexdigest()
        return tmp_path / "blobs" / digest[:2] / digest[2:4] / digest

    repo = "/organizations/gc/repositories/r1"
    with LocalServer(data_dir=tmp_path) as first:
        api = httpx.Client(
            base_url=first.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {first.api_key}"}
        )
        assert api.post("/organizations", json={"name": "gc"}).status_code == 201
        assert api.post("/organizations/gc/repositories", json={"name": "r1"}).status_code == 201
        uploads = {}
        for name in ("rolled", "pending"):
            session = api.post(repo + "/sessions").json()["session_id"]
            staged = api.put(repo + "/object", params={"session_id": session, "path": name}).json()
            assert httpx.put(staged["upload_url"], content=name.encode() + b" bytes").status_code == 200
            uploads[name] = (session, staged["upload_token"])
        rolled_session, rolled_token = uploads["rolled"]
        finalized = api.post(
            repo + "/object/finalize",
            params={"session_id": rolled_session, "path": "rolled"},
            json={"upload_token": rolled_token},
        )
        assert finalized.status_code == 201, finalized.text
        assert api.delete(repo + f"/sessions/{rolled_session}").is_success
        api.close()
    # Both blobs are now older than any grace period; neither is referenced by a version or staged row.
    for data in (b"rolled bytes", b"pending bytes"):
        os.utime(blob_file(data), (1_000_000, 1_000_000))
    with LocalServer(data_dir=tmp_path) as second:
        assert not blob_file(b"rolled bytes").exists()
        assert blob_file(b"pending bytes").exists()
        api = httpx.Client(
            base_url=second.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {second.api_key}"}
        )
        session, token = uploads["pending"]
        finalized = api.post(
            repo + "/object/finalize",
            params={"session_id": session, "path": "pending"},
            json={"upload_token": token},
        )
        assert finalized.status_code == 201, finalized.text
        assert (
            api.get(repo + "/object", params={"path": "pending", "session_id": session}).content
            == b"pending bytes"
        )
        api.close()


def test_explicit_admin_key_and_config(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path, upload_url_ttl=5.0)
    with LocalServer(config=config, admin_key="tuk-given") as server:
        assert server.api_key == "tuk-given"
        assert server.app.state.config.upload_url_ttl == 5.0
        ok = httpx.get(
            server.endpoint_url + "/api/v1/organizations", headers={"Authorization": "Bearer tuk-given"}
        )
        assert ok.status_code == 200
    # The caller's settings are copied, not changed.
    assert (config.admin_key, config.port) == (None, 8900)


def test_create_api_key_helper(server: LocalServer, api: httpx.Client, org_name: str) -> None:
    assert api.post(f"/organizations/{org_name}/roles", json={"name": "ops", "description": ""}).is_success
    role_key = server.create_api_key("role", "ops", org_name)
    assert role_key.startswith("trk-")
    listed = httpx.get(
        server.endpoint_url + "/api/v1/organizations", headers={"Authorization": f"Bearer {role_key}"}
    ).json()["results"]
    assert [o["name"] for o in listed] == [org_name]
    user_key = server.create_api_key("user", "helper-user", org_name)
    assert user_key.startswith("tuk-")
    with pytest.raises(ValueError, match="organization"):
        server.create_api_key("agent", "nobody")
