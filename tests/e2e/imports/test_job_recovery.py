"""Jobs a stopped or crashed server left unfinished fail, and their sessions roll back, at start-up."""

from __future__ import annotations

from pathlib import Path

import httpx

from tilde.server import LocalServer
from tilde.server.storage import Actor


def test_unfinished_jobs_fail_at_the_next_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with LocalServer(data_dir=data) as server:
        with httpx.Client(
            base_url=server.endpoint_url + "/api/v1", headers={"Authorization": f"Bearer {server.api_key}"}
        ) as api:
            assert (
                api.post("/organizations", json={"name": "acme", "display_name": "Acme"}).status_code == 201
            )
            assert api.post("/organizations/acme/repositories", json={"name": "data"}).status_code == 201
        state = server.app.state
        org = state.registry.get_org("acme")
        repo = state.registry.get_repo(org.id, "data")
        session = state.engine.create_session(repo.id, Actor("user", "u", "admin")).id
        # What a crash mid-import leaves behind: a running job holding an open session.
        job = state.connector_store.create_job(
            org_id=org.id,
            repo_id=repo.id,
            source_repository_id=repo.id,
            source_organization="acme",
            source_repository="data",
            destination_path="x/",
            source_prefix="",
            commit_message="m",
            created_by_type="user",
            created_by="u",
            created_by_name="admin",
        )
        state.connector_store.update_job(job.id, status="running", session_id=session)

    with LocalServer(data_dir=data) as server:
        state = server.app.state
        recovered = state.connector_store.get_job(repo.id, job.id)
        assert (recovered.status, recovered.objects_imported) == ("failed", 0)
        assert "stopped" in recovered.error
        assert state.engine.get_session(repo.id, session).state == "rolled_back"
