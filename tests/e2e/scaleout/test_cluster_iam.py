"""IAM across replicas: a change made through replica A holds on replica B for B's very next request.

Both replicas cache verified keys and effective rights; without the shared IAM generation, B would keep
accepting a key revoked through A (for the cache's lifetime) and keep a policy detached through A in force
(until B itself changed something).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import PostgresServer
from replica_pair import Replica, shared_bucket, two_replicas
from weed_s3 import S3Server


@pytest.fixture(scope="module")
def pair(
    postgres_server: PostgresServer, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    database_url, root = postgres_server.new_database(), tmp_path_factory.mktemp("iam-pair")
    with two_replicas(database_url, root, **shared_bucket(s3_server)) as replicas:
        yield replicas


def _org(replica: Replica) -> str:
    name = f"org-{uuid.uuid4().hex[:10]}"
    made = replica.admin.post("/organizations", json={"name": name, "display_name": name})
    assert made.status_code == 201, made.text
    return name


def test_a_key_revoked_through_one_replica_is_refused_by_the_other_at_once(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    org = _org(a)
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    assert a.admin.post(f"/organizations/{org}/agents", json={"name": agent}).status_code == 201
    key = a.admin.post(f"/organizations/{org}/agents/{agent}/auth/keys", json={"name": "k"})
    assert key.status_code == 201, key.text
    with b.client(key.json()["token"]) as on_b, a.client(key.json()["token"]) as on_a:
        # B verifies the key and remembers it.
        assert on_b.get(f"/organizations/{org}").status_code == 200
        assert on_a.get(f"/organizations/{org}").status_code == 200
        revoked = a.admin.delete(f"/organizations/{org}/agents/{agent}/auth/keys/{key.json()['id']}")
        assert revoked.status_code == 204, revoked.text
        refused = on_b.get(f"/organizations/{org}")
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "unauthorized"
        assert on_a.get(f"/organizations/{org}").status_code == 401


def test_a_policy_detached_through_one_replica_no_longer_allows_on_the_other(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    org = _org(a)
    for name in ("kept", "other"):
        made = a.admin.post(f"/organizations/{org}/repositories", json={"name": name})
        assert made.status_code == 201, made.text
    role = f"role-{uuid.uuid4().hex[:8]}"
    made_role = a.admin.post(f"/organizations/{org}/roles", json={"name": role})
    assert made_role.status_code == 201, made_role.text
    key = a.admin.post(f"/organizations/{org}/roles/{role}/auth/keys", json={"name": "k"})
    assert key.status_code == 201, key.text
    policy = a.admin.post(
        f"/organizations/{org}/policies",
        json={"name": f"p-{uuid.uuid4().hex[:8]}", "policy_text": "GetRepository()"},
    )
    assert policy.status_code == 201, policy.text
    attachment = {"principal_type": "role", "principal_id": made_role.json()["id"]}
    policy_url = f"/organizations/{org}/policies/{policy.json()['id']}"
    assert a.admin.post(policy_url + "/attachments", json=attachment).status_code == 201
    with b.client(key.json()["token"]) as on_b:
        # B computes and caches the role's rights.
        assert on_b.get(f"/organizations/{org}/repositories/other").status_code == 200
        # Narrowed through A: the policy's text ...
        narrowed = a.admin.put(policy_url, json={"policy_text": 'GetRepository(repository="kept")'})
        assert narrowed.status_code == 200, narrowed.text
        refused = on_b.get(f"/organizations/{org}/repositories/other")
        assert refused.status_code == 403, refused.text
        assert on_b.get(f"/organizations/{org}/repositories/kept").status_code == 200
        # ... then the attachment itself.
        detached = a.admin.delete(policy_url + "/attachments", params=attachment)
        assert detached.status_code == 204, detached.text
        assert on_b.get(f"/organizations/{org}/repositories/kept").status_code == 403


def test_a_member_removed_through_one_replica_loses_access_on_the_other(
    pair: tuple[Replica, Replica], tmp_path: Path
) -> None:
    a, b = pair
    org = _org(a)
    username = f"user-{uuid.uuid4().hex[:8]}"
    token = a.server.create_api_key("user", username, org)
    with b.client(token) as on_b:
        assert on_b.get(f"/organizations/{org}").status_code == 200
        members = a.admin.get(f"/organizations/{org}/members").json()["results"]
        user_id = next(m["user_id"] for m in members if m["username"] == username)
        removed = a.admin.delete(f"/organizations/{org}/members/{user_id}")
        assert removed.status_code == 204, removed.text
        assert on_b.get(f"/organizations/{org}").status_code == 403
