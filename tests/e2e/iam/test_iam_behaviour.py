"""How grants combine and change: groups, deny, path scopes, agents capped by their creators, keys, caches."""

from __future__ import annotations

import httpx
import pytest
from iam_helpers import IamOrg, assert_forbidden, unique


@pytest.fixture(scope="module")
def repo(iam: IamOrg) -> str:
    repo = iam.repository()
    iam.commit(repo, {"public/a.txt": b"a", "secret/b.txt": b"b", "incoming/keep.txt": b"k"})
    return repo


def _get(http: httpx.Client, repo: str, path: str) -> httpx.Response:
    return http.get(f"{repo}/object", params={"path": path})


def test_a_read_only_agent_reads_but_cannot_write(iam: IamOrg, repo: str) -> None:
    agent, client = iam.agent(inline_policy="CreateSession()")
    iam.attach(iam.builtin("ReadOnly"), "agent", agent["id"])
    assert _get(client, repo, "public/a.txt").content == b"a"
    session = iam.ok(client.post(f"{repo}/sessions"), 201)["session_id"]
    assert_forbidden(
        client.put(f"{repo}/object", params={"session_id": session, "path": "x.txt"}), "PutObject"
    )
    assert_forbidden(client.delete(repo), "DeleteRepository")


def test_a_grant_through_nested_groups_holds_until_the_member_leaves(iam: IamOrg, repo: str) -> None:
    user_id, member = iam.user()
    outer = iam.ok(iam.admin.post(f"{iam.base}/groups", json={"name": unique("outer")}), 201)
    inner = iam.ok(iam.admin.post(f"{iam.base}/groups", json={"name": unique("inner")}), 201)
    nest = {"subject_type": "group", "subject_id": inner["id"]}
    iam.ok(iam.admin.post(f"{iam.base}/groups/{outer['id']}/members", json=nest), 201)
    join = {"subject_type": "user", "subject_id": user_id}
    iam.ok(iam.admin.post(f"{iam.base}/groups/{inner['id']}/members", json=join), 201)
    policy_id = iam.policy("GetRepository()")
    assert_forbidden(member.get(repo), "GetRepository")
    iam.attach(policy_id, "group", outer["id"])
    assert iam.ok(member.get(repo))["name"] == repo.rsplit("/", 1)[1]

    params = {"principal_type": "user", "principal_id": user_id}
    groups = iam.ok(iam.admin.get(f"{iam.base}/effective-groups", params=params))["results"]
    assert {(g["group_name"], g["source"], g["source_name"]) for g in groups} == {
        (inner["name"], "direct", ""),
        (outer["name"], "group", inner["name"]),
    }
    effective = iam.ok(iam.admin.get(f"{iam.base}/effective-policies", params={"user_id": user_id}))[
        "results"
    ]
    assert [(p["policy_id"], p["source"], p["source_name"]) for p in effective] == [
        (policy_id, "group", outer["name"])
    ]
    detail = iam.ok(iam.admin.get(f"{iam.base}/groups/{inner['id']}"))
    assert [(m["subject_type"], m["subject_id"]) for m in detail["members"]] == [("user", user_id)]

    iam.ok(iam.admin.delete(f"{iam.base}/groups/{inner['id']}/members", params=join | {}), 204)
    assert_forbidden(member.get(repo), "GetRepository")


def test_deleting_a_group_ends_its_grants(iam: IamOrg, repo: str) -> None:
    user_id, member = iam.user()
    group = iam.ok(iam.admin.post(f"{iam.base}/groups", json={"name": unique("g")}), 201)
    body = {"subject_type": "user", "subject_id": user_id}
    iam.ok(iam.admin.post(f"{iam.base}/groups/{group['id']}/members", json=body), 201)
    iam.attach(iam.builtin("ReadOnly"), "group", group["id"])
    assert member.get(repo).status_code == 200
    iam.ok(iam.admin.delete(f"{iam.base}/groups/{group['id']}"), 204)
    assert_forbidden(member.get(repo), "GetRepository")


def test_deny_beats_allow(iam: IamOrg, repo: str) -> None:
    user_id, member = iam.user()
    iam.attach(iam.policy('GetObject()\ndeny GetObject(path="secret/")'), "user", user_id)
    assert _get(member, repo, "public/a.txt").status_code == 200
    assert_forbidden(_get(member, repo, "secret/b.txt"), "GetObject")
    # A deny in a second policy wins over the allow in the first too.
    iam.attach(iam.policy("deny Get*()"), "user", user_id)
    assert_forbidden(_get(member, repo, "public/a.txt"), "GetObject")


def test_put_object_scoped_to_a_path_prefix(iam: IamOrg, repo: str) -> None:
    user_id, member = iam.user()
    iam.attach(
        iam.policy('CreateSession()\nPutObject(path="incoming/")\nDeleteObject(path="incoming/")'),
        "user",
        user_id,
    )
    session = iam.ok(member.post(f"{repo}/sessions"), 201)["session_id"]
    assert iam.put_object(repo, session, "incoming/new.txt", b"n", member).status_code == 201
    assert_forbidden(
        member.put(f"{repo}/object", params={"session_id": session, "path": "public/x.txt"}), "PutObject"
    )
    deleted = member.post(
        f"{repo}/objects/delete",
        params={"session_id": session},
        json={"paths": ["incoming/keep.txt", "public/a.txt"]},
    )
    assert_forbidden(deleted, "DeleteObject")
    copy = {"session_id": session, "source_path": "secret/b.txt", "destination_path": "incoming/b.txt"}
    assert_forbidden(member.post(f"{repo}/object/copy", params=copy), "GetObject")


def test_attach_and_detach_take_effect_on_the_next_request(iam: IamOrg, repo: str) -> None:
    role, client = iam.role()
    read_only = iam.builtin("ReadOnly")
    assert_forbidden(client.get(repo), "GetRepository")
    iam.attach(read_only, "role", role["id"])
    assert client.get(repo).status_code == 200
    iam.detach(read_only, "role", role["id"])
    assert_forbidden(client.get(repo), "GetRepository")


def test_an_agent_never_exceeds_its_creator(iam: IamOrg, repo: str) -> None:
    user_id, member = iam.user()
    iam.attach(iam.builtin("ReadOnly"), "user", user_id)
    iam.attach(iam.policy("CreateAgent()"), "user", user_id)
    agent, client = iam.agent(inline_policy="*()", creator=member)
    assert agent["created_by"] == user_id
    assert client.get(repo).status_code == 200
    assert_forbidden(client.post(f"{repo}/sessions"), "CreateSession")
    # Removing the creator from the organization leaves the agent with nothing.
    iam.ok(iam.admin.delete(f"{iam.base}/members/{user_id}"), 204)
    assert_forbidden(client.get(repo), "GetRepository")


def test_agents_cannot_raise_their_own_rights(iam: IamOrg) -> None:
    agent, client = iam.agent(inline_policy="*()")
    name = agent["name"]
    assert_forbidden(client.put(f"{iam.base}/agents/{name}", json={"inline_policy": "*()"}), "UpdateAgent")
    assert_forbidden(client.post(f"{iam.base}/agents/{name}/auth/keys", json={"name": "k"}), "CreateAPIKey")
    assert_forbidden(
        client.post(f"{iam.base}/agents", json={"name": unique("a"), "description": ""}), "CreateAgent"
    )
    attach = {"principal_type": "agent", "principal_id": agent["id"]}
    assert_forbidden(
        client.post(f"{iam.base}/policies/{iam.builtin('FullAccess')}/attachments", json=attach),
        "AttachPolicy",
    )
    assert_forbidden(
        client.post(f"{iam.base}/policies", json={"name": "p", "policy_text": "*()"}), "CreatePolicy"
    )
    assert_forbidden(client.post(f"{iam.base}/groups", json={"name": "g"}), "CreateGroup")


def test_a_revoked_key_and_a_deleted_agents_key_are_refused(iam: IamOrg) -> None:
    agent, client = iam.agent(inline_policy="ListRepositories()")
    assert client.get(f"{iam.base}/repositories").status_code == 200
    key = iam.ok(iam.admin.post(f"{iam.base}/agents/{agent['name']}/auth/keys", json={"name": "second"}), 201)
    second = iam.client(key["token"])
    assert second.get(f"{iam.base}/repositories").status_code == 200
    iam.ok(iam.admin.delete(f"{iam.base}/agents/{agent['name']}/auth/keys/{key['id']}"), 204)
    assert second.get(f"{iam.base}/repositories").status_code == 401
    assert client.get(f"{iam.base}/repositories").status_code == 200
    iam.ok(iam.admin.delete(f"{iam.base}/agents/{agent['name']}"), 204)
    assert client.get(f"{iam.base}/repositories").status_code == 401


def test_deleting_a_role_drops_its_attachments(iam: IamOrg) -> None:
    role, _ = iam.role()
    read_only = iam.builtin("ReadOnly")
    iam.attach(read_only, "role", role["id"])
    before = iam.ok(iam.admin.get(f"{iam.base}/policies/{read_only}"))["attachments"]
    assert role["id"] in [a["principal_id"] for a in before]
    iam.ok(iam.admin.delete(f"{iam.base}/roles/{role['name']}"), 204)
    after = iam.ok(iam.admin.get(f"{iam.base}/attachments"))["results"]
    assert role["id"] not in [a["principal_id"] for a in after]


def test_built_in_policies_are_seeded_and_cannot_change(iam: IamOrg) -> None:
    summaries = iam.ok(iam.admin.get(f"{iam.base}/policies", params={"amount": 1}))
    assert summaries["pagination"]["has_more"] is True
    listed = iam.ok(iam.admin.get(f"{iam.base}/policies"))["results"]
    assert {"FullAccess", "ReadOnly", "ReadWrite"} <= {p["name"] for p in listed if p["is_builtin"]}
    assert all("attachment_count" in p and "policy_text" not in p for p in listed)
    builtin = iam.builtin("ReadOnly")
    assert iam.admin.put(f"{iam.base}/policies/{builtin}", json={"policy_text": "*()"}).status_code == 400
    assert iam.admin.delete(f"{iam.base}/policies/{builtin}").status_code == 400


def test_policy_texts_are_validated(iam: IamOrg) -> None:
    bad = "GetObject()\nGetObjekt()"
    check = iam.ok(iam.admin.post(f"{iam.base}/policies:validate", json={"policy_text": bad}))
    assert check["valid"] is False
    assert (check["errors"][0]["line"], check["errors"][0]["column"]) == (2, 1)
    assert iam.ok(iam.admin.post(f"{iam.base}/policies:validate", json={"policy_text": "GetObject()"})) == {
        "valid": True,
        "errors": [],
    }
    refused = iam.admin.post(f"{iam.base}/policies", json={"name": unique("p"), "policy_text": bad})
    assert refused.status_code == 400
    assert "line 2, column 1" in refused.json()["message"]
    agent, _ = iam.agent()
    assert iam.admin.put(f"{iam.base}/agents/{agent['name']}", json={"inline_policy": bad}).status_code == 400
    generated = iam.ok(
        iam.admin.post(
            f"{iam.base}/policies:generate", json={"prompt": "read-only access to all repositories"}
        )
    )
    assert iam.ok(iam.admin.post(f"{iam.base}/policies:validate", json=generated))["valid"] is True
    assert iam.admin.post(f"{iam.base}/policies:generate", json={"prompt": "x" * 4001}).status_code == 400


def test_groups_refuse_cycles_and_strangers(iam: IamOrg) -> None:
    a = iam.ok(iam.admin.post(f"{iam.base}/groups", json={"name": unique("a")}), 201)
    b = iam.ok(iam.admin.post(f"{iam.base}/groups", json={"name": unique("b")}), 201)
    iam.ok(
        iam.admin.post(
            f"{iam.base}/groups/{a['id']}/members", json={"subject_type": "group", "subject_id": b["id"]}
        ),
        201,
    )
    cycle = iam.admin.post(
        f"{iam.base}/groups/{b['id']}/members", json={"subject_type": "group", "subject_id": a["id"]}
    )
    assert cycle.status_code == 400
    itself = iam.admin.post(
        f"{iam.base}/groups/{a['id']}/members", json={"subject_type": "group", "subject_id": a["id"]}
    )
    assert itself.status_code == 400
    stranger = {"subject_type": "user", "subject_id": "00000000-0000-7000-8000-000000000000"}
    assert iam.admin.post(f"{iam.base}/groups/{a['id']}/members", json=stranger).status_code == 404
    bad_type = {"subject_type": "robot", "subject_id": "x"}
    assert iam.admin.post(f"{iam.base}/groups/{a['id']}/members", json=bad_type).status_code == 400
    unknown = {"principal_type": "agent", "principal_id": "00000000-0000-7000-8000-000000000000"}
    assert (
        iam.admin.post(f"{iam.base}/policies/{iam.builtin('ReadOnly')}/attachments", json=unknown).status_code
        == 404
    )
    duplicate = iam.admin.post(f"{iam.base}/groups", json={"name": a["name"]})
    assert duplicate.status_code == 409


def test_an_agent_that_may_commit_may_wait_for_its_approval(iam: IamOrg) -> None:
    # A blocking session.commit() polls HEAD .../approve after its 202: committing must be enough for that.
    guarded = iam.repository(agent_commits_require_approval=True)
    name = guarded.rsplit("/", 1)[1]
    _, bot = iam.agent(
        f'CreateSession(repository="{name}")\nPutObject(repository="{name}")\nCommitSession(repository="{name}")'
    )
    session = iam.ok(bot.post(f"{guarded}/sessions"), 201)["session_id"]
    iam.ok(iam.put_object(guarded, session, "results.csv", b"a,b\n", bot))
    parked = bot.post(f"{guarded}/sessions/{session}", json={"message": "add results"})
    assert parked.status_code == 202, parked.text
    assert bot.head(f"{guarded}/sessions/{session}/approve").status_code == 200
    assert_forbidden(bot.get(f"{guarded}/sessions/{session}/approve"), "ListObjects")
    iam.ok(iam.admin.post(f"{guarded}/sessions/{session}/approve", json={"message": "ok"}))
    assert bot.head(f"{guarded}/sessions/{session}/approve").status_code == 404


def test_effective_groups_name_the_bad_query_parameter(iam: IamOrg) -> None:
    refused = iam.admin.get(
        f"{iam.base}/effective-groups", params={"principal_type": "weird", "principal_id": "x"}
    )
    assert refused.status_code == 400
    assert "principal_type" in refused.json()["message"]


def test_members_are_added_by_valid_user_names_only(iam: IamOrg) -> None:
    refused = iam.admin.post(f"{iam.base}/members", json={"username": "a b/c"})
    assert refused.status_code == 400
    assert "user names must match" in refused.json()["message"]


@pytest.mark.backends("local", "postgres")  # breaks the in-process server's plugin manager
def test_a_generator_plugin_that_cannot_load_is_a_502(iam: IamOrg, monkeypatch: pytest.MonkeyPatch) -> None:
    from tilde.server.api import policies
    from tilde.server.iam.plugins import PluginLoadError

    def broken(**_: object) -> None:
        raise PluginLoadError("plugin 'acme' failed to import")

    monkeypatch.setattr(policies, "make_server_plugin_manager", broken)
    monkeypatch.setattr(iam.server.app.state, "policy_plugin_manager", None, raising=False)
    answer = iam.admin.post(f"{iam.base}/policies:generate", json={"prompt": "read-only access"})
    assert answer.status_code == 502
    assert answer.json()["code"] == "generator_unavailable"
