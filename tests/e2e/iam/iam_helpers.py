"""Helpers of the IAM end-to-end tests: an organization with principals made to measure.

Everything goes over real HTTP to the session's `LocalServer`. Users get their ``tuk-`` keys from
`LocalServer.create_api_key` (the server's own helper for tests); agents and roles get theirs from the API.
Kept out of ``conftest.py``: importing from a conftest clashes when several test directories are collected
together.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tilde.server import LocalServer


def unique(prefix: str) -> str:
    """A fresh name matching the organization/agent/role name pattern."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_forbidden(response: httpx.Response, action: str) -> None:
    """Check a 403 with the contract's error body whose message names ``action``."""
    assert response.status_code == 403, (
        f"expected 403 naming {action}, got {response.status_code}: {response.text}"
    )
    body = response.json()
    assert body["code"] == "forbidden", body
    assert re.search(rf"\b{action}\b", body["message"]), f"{action} not named in {body['message']!r}"


@dataclass
class IamOrg:
    """An organization and helpers to make principals in it (the admin acts for the owner)."""

    server: LocalServer
    admin: httpx.Client
    name: str
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"/organizations/{self.name}"

    def client(self, token: str) -> httpx.Client:
        """An HTTP client on ``/api/v1`` authenticated with ``token`` (closed with the fixture)."""
        http = httpx.Client(
            base_url=str(self.admin.base_url),
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            follow_redirects=True,  # object reads on an S3 blob store answer 307 to the store
        )
        self.clients.append(http)
        return http

    def ok(self, response: httpx.Response, status: int | None = None) -> Any:
        """Assert success (or exactly ``status``) and return the JSON body, if any."""
        assert response.is_success if status is None else response.status_code == status, response.text
        return response.json() if response.content else None

    def user(self, org: str | None = None) -> tuple[str, httpx.Client]:
        """A new member user (no policy) and a client authenticated as it: ``(user_id, client)``."""
        name = unique("user")
        token = self.server.create_api_key("user", name, org or self.name)
        members = self.ok(self.admin.get(f"/organizations/{org or self.name}/members"))["results"]
        user_id = next(m["user_id"] for m in members if m["username"] == name)
        return user_id, self.client(token)

    def agent(
        self, inline_policy: str | None = None, creator: httpx.Client | None = None
    ) -> tuple[dict[str, Any], httpx.Client]:
        """A new agent (made by ``creator``, default the admin) and a client with a fresh key for it."""
        name = unique("agent")
        made = self.ok(
            (creator or self.admin).post(f"{self.base}/agents", json={"name": name, "description": ""}), 201
        )
        if inline_policy is not None:
            self.ok(self.admin.put(f"{self.base}/agents/{name}", json={"inline_policy": inline_policy}))
        key = self.ok(self.admin.post(f"{self.base}/agents/{name}/auth/keys", json={"name": "k"}), 201)
        return made, self.client(key["token"])

    def role(self) -> tuple[dict[str, Any], httpx.Client]:
        """A new role and a client with a fresh key for it."""
        name = unique("role")
        made = self.ok(self.admin.post(f"{self.base}/roles", json={"name": name, "description": ""}), 201)
        key = self.ok(self.admin.post(f"{self.base}/roles/{name}/auth/keys", json={"name": "k"}), 201)
        return made, self.client(key["token"])

    def policy(self, text: str, org: str | None = None) -> str:
        """Create a policy; returns its id."""
        body = {"name": unique("policy"), "policy_text": text}
        created = self.ok(self.admin.post(f"/organizations/{org or self.name}/policies", json=body), 201)
        policy_id: str = created["id"]
        return policy_id

    def set_policy(self, policy_id: str, text: str, org: str | None = None) -> None:
        """Replace a policy's text."""
        self.ok(
            self.admin.put(
                f"/organizations/{org or self.name}/policies/{policy_id}", json={"policy_text": text}
            )
        )

    def builtin(self, name: str) -> str:
        """The id of a built-in policy."""
        policies = self.ok(self.admin.get(f"{self.base}/policies"))["results"]
        return next(p["id"] for p in policies if p["name"] == name and p["is_builtin"])

    def attach(self, policy_id: str, principal_type: str, principal_id: str, org: str | None = None) -> None:
        body = {"principal_type": principal_type, "principal_id": principal_id}
        self.ok(
            self.admin.post(f"/organizations/{org or self.name}/policies/{policy_id}/attachments", json=body),
            201,
        )

    def detach(self, policy_id: str, principal_type: str, principal_id: str) -> None:
        params = {"principal_type": principal_type, "principal_id": principal_id}
        self.ok(self.admin.delete(f"{self.base}/policies/{policy_id}/attachments", params=params), 204)

    def repository(self, name: str | None = None, **fields: Any) -> str:
        """Create a repository; returns its path relative to ``/api/v1``."""
        name = name or unique("repo")
        self.ok(
            self.admin.post(
                f"{self.base}/repositories", json={"name": name, "visibility": "private", **fields}
            ),
            201,
        )
        return f"{self.base}/repositories/{name}"

    def commit(self, repo: str, objects: dict[str, bytes], client: httpx.Client | None = None) -> str:
        """Write objects in one session and commit it (as ``client``, default the admin); the commit id."""
        http = client or self.admin
        session = self.ok(http.post(f"{repo}/sessions"), 201)["session_id"]
        for path, data in objects.items():
            self.put_object(repo, session, path, data, http)
        done = self.ok(http.post(f"{repo}/sessions/{session}", json={"message": "seed"}))
        commit_id: str = done["commit_id"]
        return commit_id

    def put_object(
        self, repo: str, session: str, path: str, data: bytes, client: httpx.Client | None = None
    ) -> httpx.Response:
        """Stage one object through the presigned upload flow; returns the finalize (or refusing) response."""
        http = client or self.admin
        staged = http.put(f"{repo}/object", params={"session_id": session, "path": path})
        if not staged.is_success:
            return staged
        target = staged.json()
        uploaded = httpx.put(target["upload_url"], content=data, timeout=60)
        assert uploaded.is_success, uploaded.text
        body = {"upload_token": target["upload_token"], "content_type": "text/plain"}
        return http.post(f"{repo}/object/finalize", params={"session_id": session, "path": path}, json=body)

    def wait_sandbox(self, repo: str, sandbox_id: str, *, while_: str | None = None) -> dict[str, Any]:
        """Long-poll a sandbox's status until it leaves ``while_`` (default: until it ends)."""
        deadline = time.monotonic() + 120
        while True:
            params: dict[str, Any] = {"wait": 30, **({"while": while_} if while_ else {})}
            status: dict[str, Any] = self.ok(
                self.admin.get(f"{repo}/sandboxes/{sandbox_id}/status", params=params)
            )
            if (status["status"] != while_) if while_ else status["status"] not in ("starting", "running"):
                return status
            assert time.monotonic() < deadline, status
