"""Fixtures for the raw-HTTP tests of tilde-server: a small helper around one repository."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tilde.server import LocalServer


class RepoAPI:
    """Raw calls on one repository, returning httpx responses (no status checks unless named ``*_ok``)."""

    def __init__(self, api: httpx.Client, org: str, name: str) -> None:
        self.api = api
        self.org = org
        self.name = name
        self.base = f"/organizations/{org}/repositories/{name}"

    def url(self, suffix: str = "") -> str:
        return self.base + suffix

    def new_session(self) -> str:
        response = self.api.post(self.url("/sessions"))
        assert response.status_code == 201, response.text
        session_id: str = response.json()["session_id"]
        return session_id

    def stage(self, session_id: str, path: str) -> dict[str, Any]:
        response = self.api.put(self.url("/object"), params={"session_id": session_id, "path": path})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def put(
        self, session_id: str, path: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> dict[str, Any]:
        """Upload ``data`` the way the client does: stage, PUT to the presigned URL, finalize."""
        staged = self.stage(session_id, path)
        uploaded = httpx.put(staged["upload_url"], content=data, headers={"Content-Type": content_type})
        assert uploaded.status_code == 200, uploaded.text
        response = self.api.post(
            self.url("/object/finalize"),
            params={"session_id": session_id, "path": path},
            json={
                "upload_token": staged["upload_token"],
                "content_type": content_type,
                "checksum": uploaded.headers["etag"].strip('"'),
                "size_bytes": len(data),
            },
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def commit(self, session_id: str, message: str = "commit", **extra: Any) -> httpx.Response:
        return self.api.post(self.url(f"/sessions/{session_id}"), json={"message": message, **extra})

    def commit_ok(self, session_id: str, message: str = "commit") -> str:
        response = self.commit(session_id, message)
        assert response.status_code == 200, response.text
        commit_id: str = response.json()["commit_id"]
        return commit_id

    def write_files(self, files: dict[str, bytes], message: str = "write") -> str:
        """Commit ``files`` in one new session and return the commit id."""
        session_id = self.new_session()
        for path, data in files.items():
            self.put(session_id, path, data)
        return self.commit_ok(session_id, message)

    def read(self, path: str, **params: Any) -> httpx.Response:
        return self.api.get(self.url("/object"), params={"path": path, **params})


@pytest.fixture
def repo(api: httpx.Client, repo_path: str) -> RepoAPI:
    """The helper on a fresh repository."""
    org, name = repo_path.split("/")
    return RepoAPI(api, org, name)


@pytest.fixture
def base_url(server: LocalServer) -> str:
    """The server's ``/api/v1`` base URL."""
    return server.endpoint_url + "/api/v1"


@pytest.fixture
def agent_client(
    api: httpx.Client, base_url: str, org_name: str
) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    """An agent of ``org_name`` created over HTTP, and a client authenticated with its new ``tak-`` key.

    The agent's inline policy grants every action (``*()``); the hard limits on agents still apply.
    """
    name = f"agent-{uuid.uuid4().hex[:8]}"
    created = api.post(f"/organizations/{org_name}/agents", json={"name": name, "description": "bot"})
    assert created.status_code == 201, created.text
    granted = api.put(f"/organizations/{org_name}/agents/{name}", json={"inline_policy": "*()"})
    assert granted.status_code == 200, granted.text
    key = api.post(f"/organizations/{org_name}/agents/{name}/auth/keys", json={"name": "ci"})
    assert key.status_code == 201, key.text
    token = key.json()["token"]
    assert token.startswith("tak-")
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        yield client, created.json()


ExpectError = Callable[..., dict[str, Any]]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Check the contract's JSON error body (and the matching ``X-Request-Id``) and return it."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"message", "code", "request_id"}
    assert re.fullmatch(r"req-[0-9a-f]+", body["request_id"])
    assert response.headers["x-request-id"] == body["request_id"]
    assert body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture(name="assert_error")
def assert_error_fixture() -> ExpectError:
    """``assert_error(response, status, code=None)``: check a JSON error response, return its body."""
    return assert_error
