"""Hostile and malformed input over real HTTP: each answers a specific 4xx with the contract's error body.

Covers the inputs that used to end in a 500 (deeply nested JSON, integers too large for SQLite, ``Range``
bounds longer than Python's integer digit limit), names with a trailing newline, percent-escapes that are not
UTF-8, over-long path segments, non-standard JSON constants, and what a caller without access learns about
which organizations and repositories exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.e2e.server.conftest import RepoAPI
    from tilde.server import LocalServer

ExpectError = Callable[..., dict[str, Any]]

JSON = {"Content-Type": "application/json"}


def nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000, id="100k-open-brackets"),
        pytest.param(nested_arrays(100_000), id="100k-nested-arrays"),
        pytest.param(nested_objects(5_000), id="5k-nested-objects"),
        pytest.param(b'{"name": "x", "deep": ' + nested_arrays(200) + b"}", id="200-levels-inside-an-object"),
    ],
)
def test_deeply_nested_json_is_a_400(
    api: httpx.Client, assert_error: ExpectError, org_name: str, body: bytes
) -> None:
    assert_error(api.post("/organizations", content=body, headers=JSON), 400, "invalid_json")
    assert_error(
        api.post(f"/organizations/{org_name}/repositories", content=body, headers=JSON), 400, "invalid_json"
    )
    # Nesting a request has any use for is still accepted.
    modest = b'{"name": "nested", "ignored": ' + nested_arrays(32) + b"}"
    created = api.post(f"/organizations/{org_name}/repositories", content=modest, headers=JSON)
    assert created.status_code == 201, created.text


def test_deeply_nested_secret_body_is_a_400(
    api: httpx.Client, assert_error: ExpectError, repo_path: str
) -> None:
    org, repo = repo_path.split("/")
    url = f"/organizations/{org}/repositories/{repo}/secrets/KEY"
    assert_error(api.put(url, content=nested_objects(5_000), headers=JSON), 400, "invalid_json")
    assert_error(api.put(url, content=nested_arrays(30_000), headers=JSON), 400, "invalid_json")


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
def test_non_standard_json_constants_are_a_400(
    api: httpx.Client, assert_error: ExpectError, org_name: str, constant: bytes
) -> None:
    body = b'{"name": "consts", "retention_days": ' + constant + b"}"
    response = api.post(f"/organizations/{org_name}/repositories", content=body, headers=JSON)
    assert_error(response, 400, "invalid_json")


def test_an_infinite_sandbox_timeout_is_a_400(repo: RepoAPI, assert_error: ExpectError) -> None:
    body = b'{"image": "python:3.12", "command": ["true"], "timeout_seconds": 1e400}'
    response = repo.api.post(repo.url("/sandboxes"), content=body, headers=JSON)
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize("field", ["retention_days", "session_max_duration_days"])
@pytest.mark.parametrize("value", [10**30, 2**63, 2**63 - 1, 36_501], ids=["1e30", "2^63", "2^63-1", "36501"])
def test_day_counts_beyond_the_bound_are_a_400(
    api: httpx.Client, assert_error: ExpectError, org_name: str, repo_path: str, field: str, value: int
) -> None:
    created = api.post(f"/organizations/{org_name}/repositories", json={"name": "days", field: value})
    assert_error(created, 400, "invalid_field")
    org, repo = repo_path.split("/")
    assert_error(
        api.put(f"/organizations/{org}/repositories/{repo}", json={field: value}), 400, "invalid_field"
    )
    at_bound = api.put(f"/organizations/{org}/repositories/{repo}", json={field: 36_500})
    assert at_bound.status_code == 200, at_bound.text
    assert at_bound.json()[field] == 36_500


@pytest.mark.parametrize(
    "header",
    [
        "bytes=" + "1" * 4_400 + "-",
        "bytes=0-" + "9" * 4_400,
        "bytes=-" + "9" * 4_400,
        "bytes=" + "1" * 20 + "-",
    ],
    ids=["start", "end", "suffix", "20-digits"],
)
def test_range_bounds_with_too_many_digits_are_a_400(
    repo: RepoAPI, assert_error: ExpectError, header: str
) -> None:
    repo.write_files({"r.bin": b"0123456789"})
    assert_error(repo.api.get(repo.url("/object"), params={"path": "r.bin"}, headers={"Range": header}), 400)
    # 19 digits reach past any size: served as usual.
    whole = repo.api.get(
        repo.url("/object"), params={"path": "r.bin"}, headers={"Range": "bytes=2-" + "9" * 19}
    )
    assert whole.status_code == 206
    assert whole.content == b"23456789"
    beyond = repo.api.get(
        repo.url("/object"), params={"path": "r.bin"}, headers={"Range": "bytes=" + "9" * 19 + "-"}
    )
    assert beyond.status_code == 416


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ab\n", "abc\n", "acme-corp\n"])
def test_names_with_a_trailing_newline_are_refused(
    api: httpx.Client, assert_error: ExpectError, org_name: str, name: str
) -> None:
    assert_error(api.post("/organizations", json={"name": name}), 400, "invalid_name")
    assert_error(
        api.post(f"/organizations/{org_name}/repositories", json={"name": name}), 400, "invalid_name"
    )
    assert_error(api.post(f"/organizations/{org_name}/agents", json={"name": name}), 400, "invalid_name")
    assert_error(api.post(f"/organizations/{org_name}/roles", json={"name": name}), 400, "invalid_name")
    assert_error(api.post(f"/organizations/{org_name}/members", json={"username": name}), 400, "invalid_name")


# -- what outsiders learn --------------------------------------------------------------------------


def _outsider(server: LocalServer, base_url: str) -> httpx.Client:
    token = server.create_api_key("user", f"outsider-{uuid.uuid4().hex[:8]}")
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _same_refusal(existing: httpx.Response, unknown: httpx.Response, name: str, missing: str) -> None:
    assert existing.status_code == unknown.status_code == 403, (existing.text, unknown.text)
    first, second = existing.json(), unknown.json()
    assert first["code"] == second["code"]
    assert first["message"].replace(name, "<name>") == second["message"].replace(missing, "<name>")


@pytest.mark.parametrize(
    "suffix",
    ["", "/repositories", "/members", "/agents", "/repositories/r1", "/repositories/r1/sessions"],
)
def test_outsiders_cannot_tell_which_organizations_exist(
    server: LocalServer, base_url: str, api: httpx.Client, org_name: str, suffix: str
) -> None:
    assert api.post(f"/organizations/{org_name}/repositories", json={"name": "r1"}).status_code in (201, 409)
    missing = f"nope-{uuid.uuid4().hex[:10]}"
    with _outsider(server, base_url) as outsider:
        method = "POST" if suffix.endswith("/sessions") else "GET"
        existing = outsider.request(method, f"/organizations/{org_name}{suffix}")
        unknown = outsider.request(method, f"/organizations/{missing}{suffix}")
    _same_refusal(existing, unknown, org_name, missing)
    # The administrator, who sees every organization anyway, still learns that a name is unknown.
    assert api.request(method, f"/organizations/{missing}{suffix}").status_code == 404


def test_a_member_refused_a_repository_cannot_tell_whether_it_exists(
    api: httpx.Client, base_url: str, org_name: str, assert_error: ExpectError
) -> None:
    for name in ("secret-plans", "ml-data"):
        assert api.post(f"/organizations/{org_name}/repositories", json={"name": name}).status_code == 201
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    assert api.post(f"/organizations/{org_name}/agents", json={"name": agent, "description": ""}).is_success
    policy = 'GetRepository(repository="ml-*")\n'
    assert api.put(f"/organizations/{org_name}/agents/{agent}", json={"inline_policy": policy}).is_success
    token = api.post(f"/organizations/{org_name}/agents/{agent}/auth/keys", json={"name": "k"}).json()[
        "token"
    ]
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        repos = f"/organizations/{org_name}/repositories"
        assert client.get(f"{repos}/ml-data").status_code == 200
        assert_error(client.get(f"{repos}/ml-missing"), 404, "not_found")
        existing = client.get(f"{repos}/secret-plans")
        unknown = client.get(f"{repos}/secret-nothing")
    _same_refusal(existing, unknown, "secret-plans", "secret-nothing")


# -- paths -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("escape", ["%FF", "%C3", "a%80b", "%ED%A0%80", "%C0%AF"])
def test_percent_escapes_that_are_not_utf8_are_a_400(
    repo: RepoAPI, assert_error: ExpectError, escape: str
) -> None:
    session_id = repo.new_session()
    staged = repo.api.put(repo.url(f"/object?session_id={session_id}&path=dir/{escape}"))
    assert_error(staged, 400, "invalid_parameter")
    assert_error(repo.api.get(repo.url(f"/object?path={escape}")), 400, "invalid_parameter")
    assert_error(repo.api.get(repo.url(f"/objects?prefix={escape}")), 400, "invalid_parameter")
    assert_error(repo.api.get(repo.url(f"/objects?after={escape}")), 400, "invalid_parameter")
    # U+FFFD itself, correctly encoded, is an ordinary character of a path.
    staged = repo.api.put(repo.url(f"/object?session_id={session_id}&path=odd-%EF%BF%BD"))
    assert staged.status_code == 200, staged.text


def test_a_300_byte_segment_is_a_400(repo: RepoAPI, assert_error: ExpectError) -> None:
    session_id = repo.new_session()
    for path in ("x" * 300, "dir/" + "y" * 256 + "/file", "é" * 128):
        staged = repo.api.put(repo.url("/object"), params={"session_id": session_id, "path": path})
        assert_error(staged, 400, "invalid_path")
    fits = repo.api.put(
        repo.url("/object"), params={"session_id": session_id, "path": "dir/" + "é" * 127 + "e"}
    )
    assert fits.status_code == 200, fits.text


def test_nfc_and_nfd_spellings_are_two_paths(repo: RepoAPI) -> None:
    """Paths are byte-exact, like S3 and git: no Unicode normalisation on the server."""
    nfc, nfd = "caf\u00e9.txt", "cafe\u0301.txt"
    repo.write_files({nfc: b"composed", nfd: b"decomposed"})
    assert repo.read(nfc).content == b"composed"
    assert repo.read(nfd).content == b"decomposed"
    listed = [item["path"] for item in repo.api.get(repo.url("/objects")).json()["results"]]
    assert sorted(listed) == sorted([nfc, nfd])


# -- response shapes ---------------------------------------------------------------------------------


def test_last_page_cursor_is_a_string(api: httpx.Client, org_name: str) -> None:
    pagination = api.get(f"/organizations/{org_name}/repositories").json()["pagination"]
    assert pagination["has_more"] is False
    assert pagination["next_offset"] == ""


def test_unset_retention_is_left_out_not_null(api: httpx.Client, org_name: str) -> None:
    created = api.post(f"/organizations/{org_name}/repositories", json={"name": "plain"}).json()
    assert "retention_days" not in created
    assert created["session_max_duration_days"] is None


@pytest.mark.parametrize("metadata", [{"n": 1}, {"b": True}, {"x": None}, {"o": {"a": "b"}}, {"l": ["a"]}])
def test_agent_metadata_values_must_be_strings(
    api: httpx.Client, assert_error: ExpectError, org_name: str, metadata: dict[str, Any]
) -> None:
    agents = f"/organizations/{org_name}/agents"
    assert_error(api.post(agents, json={"name": "meta", "metadata": metadata}), 400, "invalid_field")
    assert api.post(agents, json={"name": "meta2", "metadata": {"team": "x"}}).status_code == 201
    assert_error(api.put(f"{agents}/meta2", json={"metadata": metadata}), 400, "invalid_field")


@pytest.mark.parametrize(
    ("method", "suffix", "allowed"),
    [
        ("PATCH", "", "DELETE, GET, HEAD, PUT"),
        ("POST", "/object", "DELETE, GET, HEAD, PUT"),
        ("PATCH", "/secrets/KEY", "DELETE, GET, HEAD, PUT"),
    ],
)
def test_405_names_every_method_of_the_path(
    repo: RepoAPI, assert_error: ExpectError, method: str, suffix: str, allowed: str
) -> None:
    refused = repo.api.request(method, repo.url(suffix))
    assert_error(refused, 405, "method_not_allowed")
    assert refused.headers["allow"] == allowed


def test_the_server_serves_its_own_openapi_document(server: LocalServer) -> None:
    document = httpx.get(server.endpoint_url + "/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    assert set(paths["/organizations/{org}/repositories/{repo}"]) == {"get", "put", "delete"}


@pytest.mark.parametrize("cursor", ["9" * 5_000, "9" * 20, str(2**63), "\u00b2", "1\u0663"])
def test_integer_cursors_out_of_range_are_a_400(
    repo: RepoAPI, assert_error: ExpectError, cursor: str
) -> None:
    assert_error(
        repo.api.get(repo.url("/sandbox-triggers"), params={"after": cursor}), 400, "invalid_parameter"
    )


@pytest.mark.parametrize("number", ["9" * 5_000, "\u00b2", "1\u0663"])
def test_part_numbers_that_are_not_ascii_integers_are_a_400(
    repo: RepoAPI, assert_error: ExpectError, number: str
) -> None:
    session_id = repo.new_session()
    where = {"session_id": session_id, "path": "big.bin"}
    started = repo.api.post(repo.url("/object/multipart"), params=where)
    assert started.status_code == 200, started.text
    params = {
        **where,
        "upload_id": started.json()["upload_id"],
        "upload_token": started.json()["upload_token"],
    }
    assert_error(
        repo.api.get(repo.url("/object/multipart/part"), params={**params, "part_number": number}), 400
    )
    assert repo.api.get(repo.url("/object/multipart/part"), params={**params, "part_number": "3"}).is_success


def test_agent_metadata_stored_before_the_rule_is_sent_as_strings(
    server: LocalServer, api: httpx.Client, org_name: str
) -> None:
    registry = server.app.state.registry
    org = registry.get_org(org_name)
    creator = ("user", registry.admin.id, "admin")
    registry.create_agent(org.id, "legacy", "", {"n": 1, "ok": "yes", "o": {"a": [1]}}, creator)
    agent = api.get(f"/organizations/{org_name}/agents/legacy")
    assert agent.status_code == 200, agent.text
    assert agent.json()["metadata"] == {"n": "1", "ok": "yes", "o": '{"a": [1]}'}
