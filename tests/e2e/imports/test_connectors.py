"""Connector routes: validation, attachments, soft delete, disabled connectors, credentials kept secret."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from data_scan import files_containing
from imports_helpers import S3, LogCapture, wait_for_job

from tilde.server import LocalServer


def _create(api: httpx.Client, org: str, **body: Any) -> httpx.Response:
    return api.post(f"/organizations/{org}/connectors", json=body)


def _s3_body(s3: S3, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": f"c-{uuid.uuid4().hex[:8]}",
        "type": "s3",
        "source_uri": f"s3://{s3.bucket}/data/",
        "config": s3.config(),
    }
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"type": "gcs"}, "not supported by this server"),
        ({"type": "google_drive"}, "not supported by this server"),
        ({"type": "ftp"}, "type must be one of"),
        ({"name": "bad name!"}, "name must be"),
        ({"source_uri": "https://bucket/x"}, "s3://bucket/prefix/"),
        ({"source_uri": "s3://B_/x"}, "invalid bucket name"),
        ({"config": {"access_key_id": "a", "region": "us-east-1"}}, "config.secret_access_key"),
        (
            {
                "config": {
                    "access_key_id": "a",
                    "secret_access_key": "b",
                    "region": "us-east-1",
                    "secret": "c",
                }
            },
            "unknown",
        ),
        (
            {
                "config": {
                    "access_key_id": "a",
                    "secret_access_key": "b",
                    "region": "us-east-1",
                    "endpoint_url": "x",
                }
            },
            "endpoint_url",
        ),
        ({"config": "nope"}, "config must be an object"),
        ({"config": {"access_key_id": 1, "secret_access_key": "b", "region": "r"}}, "must be a string"),
    ],
)
def test_bad_connectors_are_refused_with_a_specific_message(
    api: httpx.Client, org_name: str, s3: S3, overrides: dict[str, Any], fragment: str
) -> None:
    response = _create(api, org_name, **_s3_body(s3, **overrides))
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"message", "code", "request_id"}
    assert fragment in body["message"]


def test_local_connectors_are_limited_to_the_allowed_roots(
    api: httpx.Client, org_name: str, local_root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    response = _create(api, org_name, name="out", type="local", source_uri=outside.as_uri() + "/", config={})
    assert response.status_code == 400
    assert "not under a directory this server allows" in response.json()["message"]
    # A link inside the root leading out of it is judged by where it leads.
    link = local_root / f"link-{uuid.uuid4().hex[:6]}"
    link.symlink_to(outside)
    response = _create(
        api, org_name, name="via-link", type="local", source_uri="", config={"path": str(link)}
    )
    assert response.status_code == 400
    missing = local_root / "missing-dir"
    response = _create(api, org_name, name="missing", type="local", source_uri=missing.as_uri(), config={})
    assert response.status_code == 400
    assert "does not exist" in response.json()["message"]
    inside = local_root / f"ok-{uuid.uuid4().hex[:6]}"
    inside.mkdir()
    response = _create(api, org_name, name="ok", type="local", source_uri="", config={"path": str(inside)})
    assert response.status_code == 201, response.text
    assert response.json()["source_uri"] == inside.resolve().as_uri() + "/"


def test_credentials_never_come_back(api: httpx.Client, org_name: str, repo_path: str, s3: S3) -> None:
    created = _create(
        api, org_name, **_s3_body(s3, config=s3.config(session_token="tok-" + uuid.uuid4().hex))
    )
    assert created.status_code == 201, created.text
    info = created.json()
    assert set(info) == {
        "id",
        "name",
        "type",
        "source_uri",
        "display_source",
        "disabled",
        "public_key",
        "created_at",
    }
    assert (info["public_key"], info["disabled"], info["display_source"]) == (None, False, info["source_uri"])
    org, repo = repo_path.split("/")
    responses = [
        created,
        api.get(f"/organizations/{org}/connectors"),
        api.get(f"/organizations/{org}/connectors/{info['id']}"),
        api.post(f"/organizations/{org}/repositories/{repo}/connectors", json={"connector_id": info["id"]}),
        api.get(f"/organizations/{org}/repositories/{repo}/connectors"),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert s3.secret_access_key not in response.text
        assert "secret_access_key" not in response.text


def test_attach_detach_delete_and_disable(
    server: LocalServer, api: httpx.Client, org_name: str, repo_path: str, s3: S3
) -> None:
    org, repo = repo_path.split("/")
    connector = _create(api, org, **_s3_body(s3)).json()
    cid = connector["id"]
    base = f"/organizations/{org}/repositories/{repo}"
    start = {"connector_id": cid, "destination_path": "x/"}

    # Not attached yet: the import is refused before any job exists.
    response = api.post(f"{base}/import", json=start)
    assert response.status_code == 404
    assert "not attached" in response.json()["message"]
    assert api.delete(f"{base}/connectors/{cid}").status_code == 404
    assert api.post(f"{base}/connectors", json={"connector_id": "nope"}).status_code == 404
    assert api.post(f"{base}/connectors", json={}).status_code == 400

    assert api.post(f"{base}/connectors", json={"connector_id": cid}).status_code == 201
    assert api.post(f"{base}/connectors", json={"connector_id": cid}).status_code == 201  # idempotent
    assert [c["id"] for c in api.get(f"{base}/connectors").json()["results"]] == [cid]

    # A source prefix outside the connector's own prefix is refused.
    response = api.post(f"{base}/import", json={**start, "source_prefix": "other/"})
    assert response.status_code == 400
    assert "outside the connector's prefix" in response.json()["message"]
    for bad in ({"connector_id": cid}, {**start, "source_organization": org}, {"destination_path": "x/"}):
        assert api.post(f"{base}/import", json=bad).status_code == 400
    assert api.post(f"{base}/import", json={**start, "destination_path": "/abs"}).status_code == 400

    # Disabled: 423 (there is no route for it; operators flip it in the store).
    server.app.state.connector_store.set_disabled(cid, True)
    assert api.get(f"/organizations/{org}/connectors/{cid}").json()["disabled"] is True
    response = api.post(f"{base}/import", json=start)
    assert response.status_code == 423
    server.app.state.connector_store.set_disabled(cid, False)

    assert api.delete(f"{base}/connectors/{cid}").status_code == 204
    assert api.get(f"{base}/connectors").json()["results"] == []
    assert api.post(f"{base}/connectors", json={"connector_id": cid}).status_code == 201

    # Deleted: gone for good, and detached everywhere.
    assert api.delete(f"/organizations/{org}/connectors/{cid}").status_code == 204
    assert api.get(f"/organizations/{org}/connectors/{cid}").status_code == 410
    assert api.delete(f"/organizations/{org}/connectors/{cid}").status_code == 410
    assert api.post(f"{base}/import", json=start).status_code == 410
    assert api.get(f"{base}/connectors").json()["results"] == []
    assert cid not in [c["id"] for c in api.get(f"/organizations/{org}/connectors").json()["results"]]
    assert api.get(f"{base}/import/{uuid.uuid4()}").status_code == 404


def test_names_are_unique_per_organization(api: httpx.Client, org_name: str, s3: S3) -> None:
    body = _s3_body(s3)
    assert _create(api, org_name, **body).status_code == 201
    assert _create(api, org_name, **body).status_code == 409


@pytest.mark.slow
def test_credentials_are_nowhere_in_clear(
    server: LocalServer, server_log: LogCapture, api: httpx.Client, repo_path: str, s3: S3
) -> None:
    """After connectors were made and used, no file of the data directory and no log line holds a secret."""
    org = repo_path.split("/")[0]
    token = "sess-" + uuid.uuid4().hex
    connector = _create(api, org, **_s3_body(s3, config=s3.config(session_token=token))).json()
    repo = repo_path.split("/")[1]
    api.post(f"/organizations/{org}/repositories/{repo}/connectors", json={"connector_id": connector["id"]})
    response = api.post(
        f"/organizations/{org}/repositories/{repo}/import",
        json={"connector_id": connector["id"], "destination_path": "x/"},
    )
    wait_for_job(api, repo_path, response.json()["job_id"])
    secrets = {"secret access key": s3.secret_access_key, "session token": token}
    assert files_containing(server.data_dir, secrets) == {}
    log = server_log.text()
    assert log  # the capture works: the import logged its outcome
    for secret in secrets.values():
        assert secret not in log
