"""Imports from a server directory (local connectors) and from other repositories, with their access rules."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from imports_helpers import commits_of, listing, read_hashes, sha256, wait_for_job

import tilde
from tilde.server import LocalServer

FILES = {
    "a.txt": b"alpha",
    "sub/b.bin": bytes(range(256)) * 100,
    "sub/deep/c.txt": b"",
    "sub/ünï.txt": "ü".encode(),
}


@pytest.fixture
def local_dir(local_root: Path, tmp_path: Path) -> Path:
    directory = local_root / f"src-{uuid.uuid4().hex[:8]}"
    for name, data in FILES.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    # Links are never followed: not to a file outside the root, not to a directory inside it.
    secret = tmp_path / "outside-secret.txt"
    secret.write_bytes(b"outside the root")
    (directory / "sub" / "leak.txt").symlink_to(secret)
    (directory / "loop").symlink_to(directory / "sub", target_is_directory=True)
    return directory


def _post(api: httpx.Client, repo_path: str, suffix: str, body: dict[str, Any]) -> httpx.Response:
    org, repo = repo_path.split("/")
    return api.post(f"/organizations/{org}/repositories/{repo}/{suffix}", json=body)


def test_local_connector_import(api: httpx.Client, repo_path: str, local_dir: Path) -> None:
    org = repo_path.split("/")[0]
    created = api.post(
        f"/organizations/{org}/connectors",
        json={"name": "offline", "type": "local", "source_uri": local_dir.as_uri() + "/", "config": {}},
    )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    assert _post(api, repo_path, "connectors", {"connector_id": cid}).status_code == 201

    response = _post(api, repo_path, "import", {"connector_id": cid, "destination_path": "local/"})
    assert response.status_code == 202, response.text
    job = wait_for_job(api, repo_path, response.json()["job_id"])
    assert (job["status"], job["error"]) == ("completed", ""), job["error"]
    assert job["objects_imported"] == len(FILES)
    assert read_hashes(api, repo_path) == {"local/" + name: sha256(data) for name, data in FILES.items()}
    entry = listing(api, repo_path)["local/a.txt"]
    assert entry["content_type"] == "text/plain"
    assert entry["source_metadata"]["connector_type"] == "local"
    assert entry["source_metadata"]["source_path"] == "a.txt"

    # A sub-prefix of the directory, into the repository's root.
    response = _post(
        api, repo_path, "import", {"connector_id": cid, "destination_path": "", "source_prefix": "sub/deep/"}
    )
    job = wait_for_job(api, repo_path, response.json()["job_id"])
    assert job["status"] == "completed", job["error"]
    assert "c.txt" in listing(api, repo_path)
    assert len(commits_of(api, repo_path)) == 2

    bad = _post(
        api, repo_path, "import", {"connector_id": cid, "destination_path": "", "source_prefix": "../"}
    )
    assert bad.status_code == 400


def _seed(client: tilde.Client, repo_path: str) -> None:
    with client.repository(repo_path).session() as session:
        session.objects.put("datasets/train/a.csv", b"a\n1\n")
        session.objects.put("datasets/train/deep/b.bin", b"\x00\x01" * 5000)
        session.objects.put("datasets/test/c.csv", b"not imported\n")
        session.commit("source data")


def _new_repo(api: httpx.Client, org: str) -> str:
    name = f"repo-{uuid.uuid4().hex[:8]}"
    assert api.post(f"/organizations/{org}/repositories", json={"name": name}).status_code == 201
    return f"{org}/{name}"


def test_cross_repository_import_in_the_same_and_another_organization(
    server: LocalServer, api: httpx.Client, repo_path: str
) -> None:
    other_org = f"other-{uuid.uuid4().hex[:8]}"
    assert api.post("/organizations", json={"name": other_org, "display_name": "Other"}).status_code == 201
    source = _new_repo(api, other_org)
    with tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as client:
        _seed(client, source)
        job = client.repository(repo_path).imports.create_from_repository(
            repo_path=source,
            destination_path="external/",
            source_prefix="datasets/train/",
            commit_message="Import training data",
        )
    job_json = wait_for_job(api, repo_path, job.id)
    assert (job_json["status"], job_json["error"]) == ("completed", ""), job_json["error"]
    assert (job_json["source_organization"], job_json["source_repository"]) == tuple(source.split("/"))
    assert job_json["objects_imported"] == 2
    log = commits_of(api, repo_path)
    assert [(c["id"], c["message"]) for c in log] == [(job_json["commit_id"], "Import training data")]
    assert read_hashes(api, repo_path) == {
        "external/a.csv": sha256(b"a\n1\n"),
        "external/deep/b.bin": sha256(b"\x00\x01" * 5000),
    }
    origin = listing(api, repo_path)["external/a.csv"]["source_metadata"]
    assert (origin["connector_type"], origin["source_path"]) == ("repository", "datasets/train/a.csv")
    assert origin["version_id"] == commits_of(api, source)[0]["id"]

    # Same organization, no prefix: the whole repository.
    same = _new_repo(api, repo_path.split("/")[0])
    org, name = source.split("/")
    response = _post(
        api, same, "import", {"source_organization": org, "source_repository": name, "destination_path": ""}
    )
    job_json = wait_for_job(api, same, response.json()["job_id"])
    assert job_json["objects_imported"] == 3

    # Unknown source repository: 404 before any job exists.
    response = _post(
        api, same, "import", {"source_organization": org, "source_repository": "nope", "destination_path": ""}
    )
    assert response.status_code == 404


def _grant(api: httpx.Client, org: str, user_id: str, text: str) -> None:
    created = api.post(
        f"/organizations/{org}/policies", json={"name": f"p-{uuid.uuid4().hex[:8]}", "policy_text": text}
    )
    assert created.status_code == 201, created.text
    attached = api.post(
        f"/organizations/{org}/policies/{created.json()['id']}/attachments",
        json={"principal_type": "user", "principal_id": user_id},
    )
    assert attached.status_code == 201, attached.text


def test_a_source_the_caller_cannot_read_is_forbidden(server: LocalServer, api: httpx.Client) -> None:
    mine = f"mine-{uuid.uuid4().hex[:8]}"
    theirs = f"theirs-{uuid.uuid4().hex[:8]}"
    for org in (mine, theirs):
        assert api.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
    source = _new_repo(api, theirs)
    readable = _new_repo(api, mine)
    with tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as client:
        _seed(client, source)
        _seed(client, readable)
    target = _new_repo(api, mine)
    user = f"user-{uuid.uuid4().hex[:8]}"
    key = server.create_api_key("user", user, org=mine)  # a member of "mine" only
    user_id = server.app.state.registry.ensure_user(user).id
    # Imports into the target; of the readable repository only what lies under datasets/train/.
    readable_name = readable.split("/")[1]
    _grant(
        api,
        mine,
        user_id,
        f'CreateImport(repository="{target.split("/")[1]}")\nGetImport()\n'
        f'ListObjects(repository="{readable_name}", path="datasets/train/")\n'
        f'GetObject(repository="{readable_name}", path="datasets/train/")\n',
    )
    with httpx.Client(
        base_url=server.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as as_user:
        org, name = source.split("/")
        body = {"source_organization": org, "source_repository": name, "destination_path": "x/"}
        response = _post(as_user, target, "import", body)
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "forbidden"
        # Probing names in an organization the caller is not in gives nothing away.
        response = _post(as_user, target, "import", {**body, "source_repository": "does-not-exist"})
        assert response.status_code == 403
        # The readable repository, but beyond the granted prefix: refused, naming the missing action.
        org, name = readable.split("/")
        body = {**body, "source_organization": org, "source_repository": name}
        response = _post(as_user, target, "import", body)
        assert response.status_code == 403, response.text
        assert "ListObjects" in response.json()["message"]
        # Within the grant: imported, as the caller.
        response = _post(as_user, target, "import", {**body, "source_prefix": "datasets/train/"})
        assert response.status_code == 202, response.text
        job = wait_for_job(as_user, target, response.json()["job_id"])
    assert job["status"] == "completed", job["error"]
    assert (job["created_by_type"], job["created_by"]) == ("user", user_id)
    assert job["objects_imported"] == 2
    assert commits_of(api, target)[0]["committer"] == user
