"""Error bodies, request ids and authentication, over real HTTP."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tilde.server import LocalServer
from tilde.server.auth import Principal, SandboxScope

ExpectError = Callable[..., dict[str, Any]]


def test_missing_key_is_401_json(assert_error: ExpectError, base_url: str) -> None:
    assert_error(httpx.get(base_url + "/organizations"), 401, "unauthorized")


def test_bad_key_is_401_json(assert_error: ExpectError, base_url: str) -> None:
    response = httpx.get(base_url + "/organizations", headers={"Authorization": "Bearer tuk-nope"})
    assert_error(response, 401, "unauthorized")


def test_non_bearer_scheme_is_401(assert_error: ExpectError, base_url: str, server: LocalServer) -> None:
    response = httpx.get(base_url + "/organizations", headers={"Authorization": f"Basic {server.api_key}"})
    assert_error(response, 401)


def test_unknown_route_is_404_json(assert_error: ExpectError, api: httpx.Client) -> None:
    body = assert_error(api.get("/no/such/route"), 404, "not_found")
    assert "/no/such/route" in body["message"]


def test_unknown_route_outside_api_is_404_json(assert_error: ExpectError, server: LocalServer) -> None:
    assert_error(httpx.get(server.endpoint_url + "/nothing-here"), 404)


def test_wrong_method_is_405_json(assert_error: ExpectError, api: httpx.Client) -> None:
    assert_error(api.patch("/organizations"), 405, "method_not_allowed")


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b""])
def test_malformed_json_is_400(assert_error: ExpectError, api: httpx.Client, body: bytes) -> None:
    response = api.post("/organizations", content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_json")


def test_oversized_json_body_is_413(assert_error: ExpectError, api: httpx.Client) -> None:
    huge = b'{"name": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    assert_error(api.post("/organizations", content=huge), 413, "payload_too_large")

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(9):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    assert_error(api.post("/organizations", content=chunks()), 413, "payload_too_large")


def test_success_responses_carry_a_request_id(api: httpx.Client) -> None:
    response = api.get("/organizations")
    assert response.status_code == 200
    assert re.fullmatch(r"req-[0-9a-f]+", response.headers["x-request-id"])


def test_uncaught_exception_is_500_json(
    assert_error: ExpectError, server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(token: str) -> Principal | None:
        raise RuntimeError("resolver exploded")

    # A token no stored key matches reaches the resolvers; a failing resolver is a server bug -> 500 JSON.
    server.app.state.token_resolvers.append(broken)
    try:
        response = httpx.get(
            server.endpoint_url + "/api/v1/organizations", headers={"Authorization": "Bearer tst-whatever"}
        )
    finally:
        server.app.state.token_resolvers.remove(broken)
    body = assert_error(response, 500, "internal_error")
    assert "exploded" not in body["message"]
    logged = [r for r in caplog.records if r.exc_info and "exploded" in str(r.exc_info[1])]
    assert len(logged) == 1
    assert body["request_id"] in logged[0].getMessage()


def test_agent_key_works_in_its_org_only(
    assert_error: ExpectError,
    api: httpx.Client,
    agent_client: tuple[httpx.Client, dict[str, Any]],
    org_name: str,
) -> None:
    agent, info = agent_client
    assert info["organization_id"]
    listed = agent.get("/organizations")
    assert listed.status_code == 200
    assert [o["name"] for o in listed.json()["results"]] == [org_name]
    assert agent.get(f"/organizations/{org_name}").status_code == 200

    other = f"org-{uuid.uuid4().hex[:10]}"
    assert api.post("/organizations", json={"name": other, "display_name": other}).status_code == 201
    assert api.post(f"/organizations/{other}/repositories", json={"name": "r1"}).status_code == 201
    assert_error(agent.get(f"/organizations/{other}"), 403, "forbidden")
    assert_error(agent.get(f"/organizations/{other}/repositories"), 403)
    assert_error(agent.get(f"/organizations/{other}/repositories/r1"), 403)
    assert_error(agent.post(f"/organizations/{other}/repositories/r1/sessions"), 403)


def test_agents_may_not_create_orgs_or_agents(
    assert_error: ExpectError, agent_client: tuple[httpx.Client, dict[str, Any]], org_name: str
) -> None:
    agent, _ = agent_client
    assert_error(agent.post("/organizations", json={"name": f"o-{uuid.uuid4().hex[:8]}"}), 403)
    assert_error(
        agent.post(f"/organizations/{org_name}/agents", json={"name": "child", "description": ""}), 403
    )


def test_revoked_and_deleted_agent_keys_stop_working(
    assert_error: ExpectError, api: httpx.Client, base_url: str, org_name: str
) -> None:
    assert (
        api.post(f"/organizations/{org_name}/agents", json={"name": "temp", "description": ""}).status_code
        == 201
    )
    keys = f"/organizations/{org_name}/agents/temp/auth/keys"
    first, second = api.post(keys, json={"name": "a"}).json(), api.post(keys, json={"name": "b"}).json()
    for created in (first, second):
        assert httpx.get(
            base_url + "/organizations", headers={"Authorization": f"Bearer {created['token']}"}
        ).is_success
    assert api.delete(f"{keys}/{first['id']}").status_code == 204
    revoked = httpx.get(base_url + "/organizations", headers={"Authorization": f"Bearer {first['token']}"})
    assert_error(revoked, 401)
    assert api.delete(f"/organizations/{org_name}/agents/temp").status_code == 204
    gone = httpx.get(base_url + "/organizations", headers={"Authorization": f"Bearer {second['token']}"})
    assert_error(gone, 401)


def test_user_sees_only_their_orgs(
    assert_error: ExpectError, server: LocalServer, api: httpx.Client, base_url: str, org_name: str
) -> None:
    username = f"user-{uuid.uuid4().hex[:8]}"
    token = server.create_api_key("user", username)
    user = {"Authorization": f"Bearer {token}"}
    assert httpx.get(base_url + "/organizations", headers=user).json()["results"] == []
    assert_error(httpx.get(base_url + f"/organizations/{org_name}", headers=user), 403)
    assert api.post(f"/organizations/{org_name}/members", json={"username": username}).status_code == 201
    names = [o["name"] for o in httpx.get(base_url + "/organizations", headers=user).json()["results"]]
    assert names == [org_name]
    own = f"org-{uuid.uuid4().hex[:10]}"
    assert httpx.post(base_url + "/organizations", headers=user, json={"name": own}).status_code == 201
    names = {o["name"] for o in httpx.get(base_url + "/organizations", headers=user).json()["results"]}
    assert names == {org_name, own}


def test_sandbox_scoped_token_is_limited_to_its_repo_and_session(
    assert_error: ExpectError,
    server: LocalServer,
    api: httpx.Client,
    base_url: str,
    repo_path: str,
    org_name: str,
) -> None:
    org, name = repo_path.split("/")
    repo = api.get(f"/organizations/{org}/repositories/{name}").json()
    own_session = api.post(f"/organizations/{org}/repositories/{name}/sessions").json()["session_id"]
    other_session = api.post(f"/organizations/{org}/repositories/{name}/sessions").json()["session_id"]
    admin = server.app.state.registry.admin
    scoped = Principal("user", admin.id, admin.username, None, SandboxScope(repo["id"], own_session))

    def resolver(token: str) -> Principal | None:
        return scoped if token == "tst-test-token" else None

    server.app.state.token_resolvers.append(resolver)
    try:
        headers = {"Authorization": "Bearer tst-test-token"}
        r = f"{base_url}/organizations/{org}/repositories/{name}"
        assert httpx.get(r, headers=headers).status_code == 200
        own = httpx.get(r + "/objects", params={"session_id": own_session}, headers=headers)
        assert own.status_code == 200
        assert_error(httpx.get(r + "/objects", params={"session_id": other_session}, headers=headers), 403)
        assert_error(
            httpx.put(r + "/object", params={"session_id": other_session, "path": "x"}, headers=headers), 403
        )
        assert httpx.put(
            r + "/object", params={"session_id": own_session, "path": "x"}, headers=headers
        ).is_success
        assert_error(httpx.post(r + "/sessions", headers=headers), 403)
        assert_error(httpx.delete(r, headers=headers), 403)
        assert_error(httpx.get(f"{base_url}/organizations/{org}/repositories", headers=headers), 403)
    finally:
        server.app.state.token_resolvers.remove(resolver)


def test_websocket_handshake_without_key_is_refused(server: LocalServer) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = (
        server.endpoint_url.replace("http://", "ws://")
        + "/api/v1/organizations/o/repositories/r/sandboxes/s/exec"
    )
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10)
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as bad_key:
        connect(url, additional_headers={"Authorization": "Bearer tuk-wrong"}, open_timeout=10)
    assert bad_key.value.response.status_code == 403
