"""Imports from a real S3 server: exact content in one commit, source metadata, and clean failures."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from imports_helpers import BUCKET_OBJECTS, S3, commits_of, listing, read_hashes, sha256, wait_for_job

import tilde


def _connector(api: httpx.Client, org: str, s3: S3, uri: str, **config: str) -> dict[str, Any]:
    body = {
        "name": f"s3-{time.monotonic_ns()}",
        "type": "s3",
        "source_uri": uri,
        "config": s3.config(**config),
    }
    response = api.post(f"/organizations/{org}/connectors", json=body)
    assert response.status_code == 201, response.text
    connector: dict[str, Any] = response.json()
    return connector


def _attach(api: httpx.Client, repo_path: str, connector_id: str) -> None:
    org, repo = repo_path.split("/")
    response = api.post(
        f"/organizations/{org}/repositories/{repo}/connectors", json={"connector_id": connector_id}
    )
    assert response.status_code == 201, response.text


def _start(api: httpx.Client, repo_path: str, **body: Any) -> httpx.Response:
    org, repo = repo_path.split("/")
    return api.post(f"/organizations/{org}/repositories/{repo}/import", json=body)


def _expected(prefix: str, destination: str) -> dict[str, str]:
    return {
        destination + key[len(prefix) :]: sha256(data)
        for key, data in BUCKET_OBJECTS.items()
        if key.startswith(prefix)
    }


@pytest.mark.slow
def test_readme_connector_flow_and_import_with_the_sdk(server: Any, s3: S3, repo_path: str) -> None:
    org_name = repo_path.split("/")[0]
    with tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as client:
        org = client.organizations.get(org_name)
        repo = client.repository(repo_path)
        conn = org.connectors.create(
            name="production-s3",
            type="s3",
            source_uri=f"s3://{s3.bucket}/data/",
            config=s3.config(),
        )
        assert (conn.name, conn.type, conn.source_uri, conn.disabled) == (
            "production-s3",
            "s3",
            f"s3://{s3.bucket}/data/",
            False,
        )
        assert [c.id for c in org.connectors.list()] == [conn.id]
        assert org.connectors.get(conn.id).name == "production-s3"
        repo.connectors.attach(conn.id)
        assert [(c.id, c.type) for c in repo.connectors.list()] == [(conn.id, "s3")]

        job = repo.imports.create_from_connector(
            connector_id=conn.id,
            destination_path="imported/",
            source_prefix="data/",
            commit_message="Import production datasets",
        )
        deadline = time.monotonic() + 120
        while job.status not in ("completed", "failed"):
            assert time.monotonic() < deadline, job.status
            time.sleep(0.05)
            job.refresh()
        assert (job.status, job.error) == ("completed", ""), job.error
        expected = _expected("data/", "imported/")
        assert job.objects_imported == len(expected) == 6
        assert (job.connector_id, job.source_prefix, job.destination_path) == (conn.id, "data/", "imported/")
        log = list(repo.commits.list())
        assert [(c.id, c.message) for c in log] == [(job.commit_id, "Import production datasets")]


@pytest.mark.slow
def test_import_holds_exactly_the_prefix_byte_for_byte_in_one_commit(
    server: Any, api: httpx.Client, s3: S3, repo_path: str
) -> None:
    org = repo_path.split("/")[0]
    # A first commit, so "exactly one more" is visible and the import leaves other paths alone.
    with (
        tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as client,
        client.repository(repo_path).session() as session,
    ):
        session.objects.put("kept.txt", b"already here")
        session.commit("before the import")
    # The whole bucket is in the connector's scope; the import takes a sub-prefix of it.
    connector = _connector(api, org, s3, f"s3://{s3.bucket}/")
    _attach(api, repo_path, connector["id"])
    before = commits_of(api, repo_path)
    assert len(before) == 1

    response = _start(
        api, repo_path, connector_id=connector["id"], destination_path="in", source_prefix="data/"
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(api, repo_path, response.json()["job_id"])
    assert (job["status"], job["error"]) == ("completed", ""), job["error"]

    expected = _expected("data/", "in/")
    assert job["objects_imported"] == len(expected)
    assert job["destination_path"] == "in/"
    assert read_hashes(api, repo_path) == {**expected, "kept.txt": sha256(b"already here")}
    after = commits_of(api, repo_path)
    assert len(after) == len(before) + 1
    assert after[0]["id"] == job["commit_id"]
    assert after[0]["message"] == f"Import from {connector['name']}"  # the default message

    entries = listing(api, repo_path)
    big = entries["in/big.bin"]
    assert big["size"] == 20 * 1024 * 1024
    source = big["source_metadata"]
    assert source["connector_id"] == connector["id"]
    assert source["connector_type"] == "s3"
    assert source["source_path"] == "data/big.bin"
    assert source["import_job_id"] == job["id"]
    assert source["source_etag"]
    assert source["import_time"]
    assert entries["in/empty.bin"]["size"] == 0
    assert "source_metadata" not in entries["kept.txt"]


@pytest.mark.slow
def test_a_wrong_secret_fails_the_job_cleanly(api: httpx.Client, s3: S3, repo_path: str) -> None:
    org = repo_path.split("/")[0]
    wrong = "wrong-" + s3.secret_access_key
    connector = _connector(api, org, s3, f"s3://{s3.bucket}/data/", secret_access_key=wrong)
    _attach(api, repo_path, connector["id"])
    response = _start(api, repo_path, connector_id=connector["id"], destination_path="x/")
    assert response.status_code == 202, response.text
    job = wait_for_job(api, repo_path, response.json()["job_id"])
    assert job["status"] == "failed"
    assert "credentials" in job["error"]
    assert wrong not in job["error"]
    assert s3.secret_access_key not in job["error"]
    assert (job["commit_id"], job["objects_imported"]) == ("", 0)
    assert commits_of(api, repo_path) == []


@pytest.mark.slow
def test_a_missing_bucket_fails_the_job_cleanly(api: httpx.Client, s3: S3, repo_path: str) -> None:
    org = repo_path.split("/")[0]
    connector = _connector(api, org, s3, "s3://no-such-bucket-here/")
    _attach(api, repo_path, connector["id"])
    response = _start(api, repo_path, connector_id=connector["id"], destination_path="x/")
    job = wait_for_job(api, repo_path, response.json()["job_id"])
    assert job["status"] == "failed"
    assert "no-such-bucket-here" in job["error"]
    assert "does not exist" in job["error"]
    assert commits_of(api, repo_path) == []


@pytest.mark.slow
def test_an_empty_prefix_fails_instead_of_committing_nothing(
    api: httpx.Client, s3: S3, repo_path: str
) -> None:
    org = repo_path.split("/")[0]
    connector = _connector(api, org, s3, f"s3://{s3.bucket}/")
    _attach(api, repo_path, connector["id"])
    response = _start(
        api, repo_path, connector_id=connector["id"], destination_path="", source_prefix="nothing/"
    )
    job = wait_for_job(api, repo_path, response.json()["job_id"])
    assert job["status"] == "failed"
    assert "nothing to import" in job["error"]
    assert commits_of(api, repo_path) == []


class _Stall:
    """A TCP listener that accepts connections and never answers, until closed (a hung S3 endpoint)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()

    def close(self) -> None:
        # shutdown() first: close() alone does not wake a thread blocked in accept(), and the listener would
        # keep taking the client's retries.
        for sock in (self.sock, *self.conns):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed or never connected
            sock.close()
        self.thread.join(timeout=10)


@pytest.fixture
def stall() -> Iterator[_Stall]:
    endpoint = _Stall()
    try:
        yield endpoint
    finally:
        endpoint.close()


@pytest.mark.slow
def test_a_second_import_while_one_runs_is_a_conflict(
    api: httpx.Client, s3: S3, repo_path: str, stall: _Stall
) -> None:
    org = repo_path.split("/")[0]
    hung = _connector(api, org, s3, "s3://hung-bucket/", endpoint_url=stall.url)
    _attach(api, repo_path, hung["id"])
    first = _start(api, repo_path, connector_id=hung["id"], destination_path="a/")
    assert first.status_code == 202, first.text
    assert stall.accepted.wait(30), "the import never reached the S3 endpoint"

    second = _start(api, repo_path, connector_id=hung["id"], destination_path="b/")
    assert second.status_code == 409, second.text
    assert second.json()["code"] == "conflict"

    stall.close()  # the endpoint goes away: a network failure, which fails the job cleanly
    job = wait_for_job(api, repo_path, first.json()["job_id"])
    assert job["status"] == "failed"
    assert "hung-bucket" in job["error"]
    assert commits_of(api, repo_path) == []
    # The slot is free again.
    third = _start(api, repo_path, connector_id=hung["id"], destination_path="c/")
    assert third.status_code == 202, third.text
    assert wait_for_job(api, repo_path, third.json()["job_id"])["status"] == "failed"
