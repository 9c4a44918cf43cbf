"""The published README's "Connectors and Imports", with our SDK, against tilde-server and a real S3 server.

Substituted: ``my-bucket`` is a fresh bucket on the loopback S3 server of the ``s3_server`` fixture, and the
connector's ``config`` carries that server's credentials plus its ``endpoint_url`` (the README's example
talks to AWS, which needs none); ``other-org/source-data`` is an organization and repository the test creates
and fills. The README's polling loop (``time.sleep(2)`` between refreshes) is kept as written.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

import tilde
from tilde.models import Organization, Repository

if TYPE_CHECKING:
    from weed_s3 import S3Server

    from tilde.server import LocalServer

#: The bucket's content: what lies under ``datasets/`` is imported, the rest is not.
BUCKET = {
    "datasets/train.csv": b"x,y\n1,2\n3,4\n",
    "datasets/images/cat.bin": bytes(range(256)) * 64,
    "datasets/empty.txt": b"",
    "other/skip.txt": b"not under the prefix",
}


@pytest.fixture
def client(server: LocalServer) -> Iterator[tilde.Client]:
    with tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as c:
        yield c


@pytest.fixture
def org(client: tilde.Client, org_name: str) -> Organization:
    return client.organizations.get(org_name)


@pytest.fixture
def repo(client: tilde.Client, repo_path: str) -> Repository:
    return client.repository(repo_path)


def committed(repo: Repository, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` at the repository's head, with its bytes."""
    head = next(repo.commits.list())
    objects = {}
    for entry in head.objects.list(prefix=prefix):
        with head.objects.get(entry.path) as f:
            objects[entry.path] = f.read()
    return objects


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_connectors_and_imports(org: Organization, repo: Repository, s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket(BUCKET)
    connectors = org.connectors

    # S3
    conn = connectors.create(
        name="production-s3",
        type="s3",
        source_uri=f"s3://{bucket}/datasets/",
        config={
            "access_key_id": s3_server.access_key_id,
            "secret_access_key": s3_server.secret_access_key,
            "region": s3_server.region,
            "endpoint_url": s3_server.endpoint_url,
        },
    )
    assert (conn.name, conn.type, conn.source_uri) == ("production-s3", "s3", f"s3://{bucket}/datasets/")
    assert [c.id for c in connectors.list()] == [conn.id]
    assert connectors.get(conn.id).name == "production-s3"

    # Attach to a repo
    repo.connectors.attach(conn.id)
    for c in repo.connectors.list():
        print(c.name, c.type)
    assert [(c.id, c.name, c.type) for c in repo.connectors.list()] == [(conn.id, "production-s3", "s3")]

    # Import from a connector
    job = repo.imports.create_from_connector(
        connector_id=conn.id,
        destination_path="imported/",
        source_prefix="datasets/",
        commit_message="Import production datasets",
    )

    while job.status not in ("completed", "failed"):
        time.sleep(2)
        job.refresh()
        print(job.status, job.objects_imported)

    if job.status == "completed":
        print(f"Import done! Commit: {job.commit_id}")

    assert (job.status, job.error) == ("completed", ""), job.error
    assert job.objects_imported == 3
    # Exactly one commit, holding exactly the objects under the prefix, byte for byte.
    log = list(repo.commits.list())
    assert [(c.id, c.message) for c in log] == [(job.commit_id, "Import production datasets")]
    expected = {
        "imported/" + key.removeprefix("datasets/"): data
        for key, data in BUCKET.items()
        if key.startswith("datasets/")
    }
    assert committed(repo, "") == expected
    assert repo.imports.get(job.id).status == "completed"

    repo.connectors.detach(conn.id)
    assert list(repo.connectors.list()) == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_import_with_a_wrong_secret_fails_cleanly(
    org: Organization, repo: Repository, s3_server: S3Server
) -> None:
    bucket = s3_server.new_bucket(BUCKET)
    conn = org.connectors.create(
        name="wrong-secret",
        type="s3",
        source_uri=f"s3://{bucket}/",
        config={
            "access_key_id": s3_server.access_key_id,
            "secret_access_key": "not-" + s3_server.secret_access_key,
            "region": s3_server.region,
            "endpoint_url": s3_server.endpoint_url,
        },
    )
    repo.connectors.attach(conn.id)
    job = repo.imports.create_from_connector(connector_id=conn.id, destination_path="imported/")
    while job.status not in ("completed", "failed"):
        time.sleep(2)
        job.refresh()
    assert job.status == "failed"
    assert job.error
    assert s3_server.secret_access_key not in job.error
    assert list(repo.commits.list()) == []


@pytest.mark.timeout(180)
def test_cross_repository_import(client: tilde.Client, repo: Repository) -> None:
    other_org = client.organizations.create(f"other-org-{uuid.uuid4().hex[:8]}", "Other org")
    source = other_org.repositories.create("source-data")
    with source.session() as session:
        session.objects.put("datasets/train/a.csv", b"a\n1\n")
        session.objects.put("datasets/train/deep/b.bin", b"\x00\x01\x02" * 1000)
        session.objects.put("datasets/test/c.csv", b"not imported\n")
        session.commit("source data")

    # "other-org/source-data" is the organization and repository just created.
    job = repo.imports.create_from_repository(
        repo_path=f"{other_org.name}/source-data",
        destination_path="external/",
        source_prefix="datasets/train/",
        commit_message="Import training data",
    )
    while job.status not in ("completed", "failed"):
        time.sleep(2)
        job.refresh()
    assert (job.status, job.error) == ("completed", ""), job.error
    assert (job.source_organization, job.source_repository) == (other_org.name, "source-data")
    assert job.objects_imported == 2
    assert [c.id for c in repo.commits.list()] == [job.commit_id]
    assert committed(repo, "") == {
        "external/a.csv": b"a\n1\n",
        "external/deep/b.bin": b"\x00\x01\x02" * 1000,
    }
    with pytest.raises(ValueError):
        repo.imports.create_from_repository(repo_path="no-slash", destination_path="x/")
