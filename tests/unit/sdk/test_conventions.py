"""One convention per kind of thing, with the published names still working (issue 13, item 9).

Client-only corners live here: what a call sends and what it is called. The behaviour against a real server
(Process.wait's timeout, execute's network flag, Members.delete by username) is in
tests/e2e/sdk/test_conventions_e2e.py.
"""

from __future__ import annotations

import json

import httpx
import pytest
import respx

import tilde

UNREACHABLE = "http://127.0.0.1:9"
BASE = "http://tilde.test/api/v1"
USER_ID = "0190a5d2-7c2e-7a3b-8f00-000000000001"


def test_from_dict_is_public_on_data_entities_and_the_old_name_still_works() -> None:
    with tilde.Client(endpoint_url=UNREACHABLE, api_key="k") as client:
        repo = tilde.Repository.from_dict(client, "acme", {"name": "data", "id": "r1"})
        assert type(repo) is tilde.Repository
        assert repo.id == "r1"
        assert type(tilde.Repository._from_dict(client, "acme", {"name": "data"})) is tilde.Repository
        commit = tilde.models.Commit.from_dict(client, "acme", "data", {"id": "c1", "message": "m"})
        assert (commit.id, commit.message) == ("c1", "m")
        sandbox = tilde.models.Sandbox.from_dict(client, "acme", "data", {"id": "s1"})
        assert sandbox.id == "s1"


def test_session_and_sandbox_ids_answer_to_both_names() -> None:
    with tilde.Client(endpoint_url=UNREACHABLE, api_key="k") as client:
        session_id, sandbox_id = (
            "5e551011-0000-4000-8000-000000000001",
            "5a4db0c5-0000-4000-8000-000000000001",
        )
        session = client.repository("acme/data").attach(session_id)
        assert session.id == session.session_id == session_id
        sandbox = client.repository("acme/data").sandboxes.get(sandbox_id)
        assert sandbox.id == sandbox.sandbox_id == sandbox_id


def test_members_delete_takes_a_username_like_get() -> None:
    members = {"results": [{"user_id": USER_ID, "username": "alice"}]}
    with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as router:
        listing = router.get("/organizations/acme/members").respond(200, json=members)
        delete = router.delete(f"/organizations/acme/members/{USER_ID}").respond(204)
        with tilde.Client(endpoint_url="http://tilde.test", api_key="k") as client:
            tilde.models.Members(client, "acme").delete("alice")
            assert listing.call_count == 1
            # A user id goes straight to DELETE, as in earlier releases (no lookup).
            tilde.models.Members(client, "acme").delete(USER_ID)
        assert delete.call_count == 2
        assert listing.call_count == 1


def test_members_delete_of_an_unknown_username_is_not_found_without_a_delete() -> None:
    with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as router:
        router.get("/organizations/acme/members").respond(200, json={"results": []})
        with (
            tilde.Client(endpoint_url="http://tilde.test", api_key="k") as client,
            pytest.raises(tilde.NotFoundError, match="nobody"),
        ):
            tilde.models.Members(client, "acme").delete("nobody")


def test_execute_sends_network_like_shell() -> None:
    sandbox_path = "/organizations/acme/repositories/data/sandboxes"
    status = {"status": "done", "status_reason": "no_changes", "exit_code": 0}
    with respx.mock(base_url=BASE, assert_all_mocked=True) as router:
        create = router.post(sandbox_path).respond(201, json={"sandbox_id": "sb1"})
        router.get(f"{sandbox_path}/sb1/status").respond(200, json=status)
        router.get(f"{sandbox_path}/sb1/logs/stdout").mock(return_value=httpx.Response(200, content=b"hi\n"))
        with tilde.Client(endpoint_url="http://tilde.test", api_key="k") as client:
            result = client.repository("acme/data").execute("echo hi", image="alpine", network=True)
    assert result.exit_code == 0
    assert json.loads(create.calls.last.request.content)["network"] is True
