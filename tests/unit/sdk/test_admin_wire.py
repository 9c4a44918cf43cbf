"""Secrets, connectors and imports on the wire (CONTRACT 4.7-4.8), against a mocked HTTP layer.

The local server does not serve these endpoints yet, so these client-only tests pin down the requests the
SDK sends and how it reads the answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
import respx

import tilde
from tilde.admin import Connector, ImportJob, Secret

BASE = "http://tilde.test/api/v1"
SECRETS = "/organizations/acme/repositories/data/secrets"

CONNECTOR_ID = "c0eec7e5-0000-4000-8000-000000000001"  # connector ids are UUIDs


@pytest.fixture
def repo() -> Iterator[Any]:
    with tilde.Client(api_key="tuk-test", endpoint_url="http://tilde.test") as client:
        yield client.repository("acme/data")


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as mock:
        yield mock


def _body(call: respx.models.Call) -> object:
    return json.loads(call.request.content)


# -- secrets -----------------------------------------------------------------------------------------------


def test_secret_list_has_metadata_and_fetches_values_lazily(repo, router: respx.MockRouter) -> None:
    listing = router.get(SECRETS).respond(
        json={
            "results": [
                {
                    "key": "API_TOKEN",
                    "created_by_type": "user",
                    "created_by": "u1",
                    "created_at": "2026-05-01T10:00:00Z",
                },
                {"name": "LEGACY", "updated_at": None},
            ]
        }
    )
    fetch = router.get(f"{SECRETS}/API_TOKEN").respond(json={"key": "API_TOKEN", "value": "s3cr3t"})
    secrets = list(repo.secrets.list())
    assert [s.name for s in secrets] == ["API_TOKEN", "LEGACY"]
    assert secrets[0].created_at == datetime(2026, 5, 1, 10, tzinfo=timezone.utc)
    assert listing.call_count == 1
    assert listing.calls[0].request.url.params.get("amount") is None  # single-shot list
    assert fetch.call_count == 0
    assert secrets[0].value == "s3cr3t"
    assert secrets[0].value == "s3cr3t"
    assert fetch.call_count == 1  # cached
    assert repr(secrets[0]) == "Secret('API_TOKEN')"
    assert "s3cr3t" not in repr(secrets[0])


def test_secret_create_get_delete(repo, router: respx.MockRouter) -> None:
    put = router.put(f"{SECRETS}/API_TOKEN").respond(json={"key": "API_TOKEN"})
    get = router.get(f"{SECRETS}/API_TOKEN").respond(json={"key": "API_TOKEN", "value": "v2"})
    delete = router.delete(f"{SECRETS}/API_TOKEN").respond(204)

    created = repo.secrets.create("API_TOKEN", "v1")
    assert isinstance(created, Secret)
    assert (created.name, created.value) == ("API_TOKEN", "v1")
    assert _body(put.calls[0]) == {"value": "v1"}
    assert get.call_count == 0  # the value given is kept, not re-read

    assert repo.secrets.get("API_TOKEN").value == "v2"
    created.delete()
    assert delete.call_count == 1
    assert repr(repo.secrets) == "Secrets(path='/organizations/acme/repositories/data/secrets')"


def test_missing_secret_is_not_found(repo, router: respx.MockRouter) -> None:
    router.get(f"{SECRETS}/NOPE").respond(
        404, json={"message": "no such secret", "code": "not_found", "request_id": "r1"}
    )
    with pytest.raises(tilde.NotFoundError) as info:
        repo.secrets.get("NOPE")
    assert info.value.request_id == "r1"


# -- connectors --------------------------------------------------------------------------------------------

CONNECTOR = {
    "id": CONNECTOR_ID,
    "name": "production-s3",
    "type": "s3",
    "source_uri": "s3://bucket/datasets/",
    "display_source": "bucket/datasets",
    "disabled": False,
    "public_key": None,
    "created_at": "2026-05-01T10:00:00.123456789Z",
}


def test_org_connectors(router: respx.MockRouter) -> None:
    create = router.post("/organizations/acme/connectors").respond(201, json=CONNECTOR)
    router.get("/organizations/acme/connectors").respond(
        json={"results": [CONNECTOR, {**CONNECTOR, "id": "c-2"}]}
    )
    router.get("/organizations/acme/connectors/c0eec7e5-0000-4000-8000-000000000001").respond(
        json={**CONNECTOR, "disabled": True}
    )
    delete = router.delete("/organizations/acme/connectors/c0eec7e5-0000-4000-8000-000000000001").respond(204)

    with tilde.Client(api_key="k", endpoint_url="http://tilde.test") as client:
        org_connectors = tilde.admin.Connectors(client, "acme")
        conn = org_connectors.create(
            "production-s3", "s3", "s3://bucket/datasets/", {"access_key_id": "AKIA", "region": "us-west-2"}
        )
        assert isinstance(conn, Connector)
        assert _body(create.calls[0]) == {
            "name": "production-s3",
            "type": "s3",
            "source_uri": "s3://bucket/datasets/",
            "config": {"access_key_id": "AKIA", "region": "us-west-2"},
        }
        assert conn.created_at is not None
        assert conn.created_at.microsecond == 123456
        assert repr(conn) == "Connector('production-s3', type='s3')"
        assert [c.id for c in org_connectors.list(amount=1)] == [CONNECTOR_ID]
        assert org_connectors.get(CONNECTOR_ID).disabled is True
        conn.delete()
        assert delete.call_count == 1
        assert repr(org_connectors) == "Connectors(org='acme')"
        assert repr(client.organizations) == "Organizations()"


def test_repository_connectors(repo, router: respx.MockRouter) -> None:
    attach = router.post("/organizations/acme/repositories/data/connectors").respond(201, json={})
    router.get("/organizations/acme/repositories/data/connectors").respond(json={"results": [CONNECTOR]})
    detach = router.delete(
        "/organizations/acme/repositories/data/connectors/c0eec7e5-0000-4000-8000-000000000001"
    ).respond(204)

    repo.connectors.attach(CONNECTOR_ID)
    assert _body(attach.calls[0]) == {"connector_id": CONNECTOR_ID}
    assert [c.name for c in repo.connectors.list()] == ["production-s3"]
    repo.connectors.detach(CONNECTOR_ID)
    assert detach.call_count == 1
    assert repr(repo.connectors) == "RepositoryConnectors(acme/data)"


# -- imports -----------------------------------------------------------------------------------------------

JOB = {
    "id": "j-1",
    "repository_id": "r-1",
    "connector_id": CONNECTOR_ID,
    "destination_path": "imported/",
    "source_prefix": "datasets/",
    "commit_message": "Import",
    "status": "pending",
    "objects_imported": None,
    "created_at": "2026-05-01T10:00:00Z",
}


def test_import_from_connector_then_refresh(repo, router: respx.MockRouter) -> None:
    start = router.post("/organizations/acme/repositories/data/import").respond(202, json={"job_id": "j-1"})
    get = router.get("/organizations/acme/repositories/data/import/j-1")
    get.side_effect = [
        httpx.Response(200, json=JOB),
        httpx.Response(200, json={**JOB, "status": "completed", "objects_imported": 12, "commit_id": "abc"}),
    ]

    job = repo.imports.create_from_connector(
        connector_id=CONNECTOR_ID,
        destination_path="imported/",
        source_prefix="datasets/",
        commit_message="Import",
    )
    assert _body(start.calls[0]) == {
        "connector_id": CONNECTOR_ID,
        "destination_path": "imported/",
        "source_prefix": "datasets/",
        "commit_message": "Import",
    }
    assert isinstance(job, ImportJob)
    assert (job.status, job.objects_imported) == ("pending", None)
    assert repr(job) == "ImportJob(id='j-1', status='pending')"

    assert job.refresh() is job
    assert (job.status, job.objects_imported, job.commit_id) == ("completed", 12, "abc")
    assert repr(repo.imports) == "Imports(acme/data)"


def test_import_from_repository_sends_only_what_is_set(repo, router: respx.MockRouter) -> None:
    start = router.post("/organizations/acme/repositories/data/import").respond(202, json={"job_id": "j-2"})
    router.get("/organizations/acme/repositories/data/import/j-2").respond(
        json={**JOB, "id": "j-2", "source_organization": "other", "source_repository": "src"}
    )
    job = repo.imports.create_from_repository("other/src", "external/")
    assert _body(start.calls[0]) == {
        "source_organization": "other",
        "source_repository": "src",
        "destination_path": "external/",
    }
    assert (job.source_organization, job.source_repository) == ("other", "src")


@pytest.mark.parametrize("bad", ["no-slash", "org/", "/repo", "a/b/c"])
def test_import_from_a_malformed_repository_path_sends_nothing(repo, bad: str) -> None:
    with respx.mock(assert_all_mocked=True) as mock:
        with pytest.raises(ValueError):
            repo.imports.create_from_repository(bad, "x/")
        assert mock.calls.call_count == 0


# -- organizations and members: corner cases the local server does not produce ---------------------------


def test_member_nulls_become_empty_strings(router: respx.MockRouter) -> None:
    router.get("/organizations/acme/members").respond(
        json={
            "results": [
                {
                    "organization_id": "o-1",
                    "user_id": "u-1",
                    "username": "alice",
                    "full_name": None,
                    "email": None,
                    "joined_at": "2026-05-01T10:00:00+02:00",
                }
            ]
        }
    )
    with tilde.Client(api_key="k", endpoint_url="http://tilde.test") as client:
        (member,) = tilde.admin.Members(client, "acme").list()
    assert (member.full_name, member.email) == ("", "")
    assert member.joined_at == datetime(2026, 5, 1, 8, tzinfo=timezone.utc)


def test_member_create_re_reads_and_reports_a_missing_member(router: respx.MockRouter) -> None:
    add = router.post("/organizations/acme/members").respond(201, json={})
    router.get("/organizations/acme/members").respond(json={"results": []})
    with (
        tilde.Client(api_key="k", endpoint_url="http://tilde.test") as client,
        pytest.raises(tilde.NotFoundError, match="'bob'"),
    ):
        tilde.admin.Members(client, "acme").create("bob")
    assert _body(add.calls[0]) == {"username": "bob"}


def test_organization_list_is_single_shot_and_capped(router: respx.MockRouter) -> None:
    orgs = [{"id": f"o-{i}", "name": f"org-{i}", "display_name": f"Org {i}"} for i in range(3)]
    listing = router.get("/organizations").respond(json={"results": orgs})
    with tilde.Client(api_key="k", endpoint_url="http://tilde.test") as client:
        names = [o.name for o in client.organizations.list(amount=2)]
    assert names == ["org-0", "org-1"]
    assert listing.call_count == 1
    assert "amount" not in listing.calls[0].request.url.params
