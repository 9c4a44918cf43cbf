"""`ImportJob.wait` and `ImportJob.from_dict`, against a mocked HTTP layer and a fake clock (no sleeps)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import respx
from admin_helpers import ORG

import tilde.admin
import tilde.admin.imports
from tilde.admin import ImportJob

JOB_ID = "10b00000-0000-4000-8000-000000000001"  # import job ids are UUIDs
JOB = f"{ORG}/repositories/data/import/{JOB_ID}"


class FakeClock:
    """Stands in for the ``time`` module of tilde.admin.imports: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(
        tilde.admin.imports, "time", SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep)
    )
    return fake


def _job(client: tilde.admin.Client, status: str) -> ImportJob:
    return ImportJob.from_dict(client, "acme", "data", {"id": JOB_ID, "status": status})


def _states(*bodies: dict[str, Any]) -> list[respx.MockResponse]:
    return [respx.MockResponse(200, json={"id": JOB_ID, **body}) for body in bodies]


def test_wait_follows_the_job_to_completion(
    client: tilde.admin.Client, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.get(JOB)
    route.side_effect = _states(
        {"status": "running", "objects_imported": 1},
        {"status": "completed", "objects_imported": 3, "commit_id": "c-9"},
    )
    job = _job(client, "pending")
    assert job.wait(poll_interval=0.5) is job
    assert (job.status, job.objects_imported, job.commit_id, job.error) == ("completed", 3, "c-9", "")
    assert route.call_count == 2
    assert clock.sleeps == [0.5, 0.5]


def test_wait_returns_a_failed_job_with_its_error(
    client: tilde.admin.Client, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.get(JOB).respond(json={"id": JOB_ID, "status": "failed", "error": "bucket not found"})
    job = _job(client, "running").wait(timeout=60)
    assert (job.status, job.error, job.commit_id) == ("failed", "bucket not found", "")


@pytest.mark.parametrize("status", ["completed", "failed", "canceled", "cancelled"])
def test_wait_on_a_finished_job_sends_nothing(
    client: tilde.admin.Client, router: respx.MockRouter, clock: FakeClock, status: str
) -> None:
    # The router has no routes, so any request would fail the test.
    job = _job(client, status)
    assert job.finished
    assert job.wait(timeout=0) is job
    assert clock.sleeps == []


def test_wait_times_out_with_the_last_state_read(
    client: tilde.admin.Client, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.get(JOB).respond(json={"id": JOB_ID, "status": "running", "objects_imported": 7})
    job = _job(client, "pending")
    with pytest.raises(TimeoutError, match=rf"{JOB_ID} is still running after 2\.5 s"):
        job.wait(timeout=2.5, poll_interval=1.0)
    # Slept 1 + 1 + 0.5 (capped at the time left), reading the job after each sleep.
    assert clock.sleeps == [1.0, 1.0, 0.5]
    assert route.call_count == 3
    assert (job.status, job.objects_imported) == ("running", 7)


def test_wait_with_zero_timeout_on_a_running_job_raises_at_once(
    client: tilde.admin.Client, router: respx.MockRouter, clock: FakeClock
) -> None:
    with pytest.raises(TimeoutError):
        _job(client, "running").wait(timeout=0)
    assert clock.sleeps == []


@pytest.mark.parametrize(("kwargs"), [{"poll_interval": 0}, {"poll_interval": -1}, {"timeout": -0.1}])
def test_wait_rejects_bad_arguments(client: tilde.admin.Client, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        _job(client, "running").wait(**kwargs)


def test_from_dict_and_keyword_constructor(client: tilde.admin.Client) -> None:
    data = {
        "id": JOB_ID,
        "repository_id": "r-1",
        "connector_id": None,
        "source_repository_id": "r-0",
        "source_organization": "other",
        "source_repository": "src",
        "destination_path": "external/",
        "source_prefix": "train/",
        "commit_message": "Import",
        "status": "completed",
        "objects_imported": "12",
        "commit_id": "c-1",
        "error": None,
        "created_by_type": "user",
        "created_by": "u-1",
        "created_at": "2026-05-01T10:00:00Z",
        "updated_at": None,
    }
    job = ImportJob.from_dict(client, "acme", "data", data)
    assert (job.connector_id, job.source_repository, job.objects_imported, job.error) == ("", "src", 12, "")
    assert job.updated_at is None
    assert job.created_at is not None
    assert repr(job) == "ImportJob(id='10b00000-0000-4000-8000-000000000001', status='completed')"
    built = ImportJob(client, "acme", "data", id="j-2", status="pending")
    assert (built.id, built.status, built.objects_imported, built.finished) == ("j-2", "pending", None, False)


def test_imports_get_uses_from_dict(client: tilde.admin.Client, router: respx.MockRouter) -> None:
    router.get(JOB).respond(json={"id": JOB_ID, "status": "running"})
    job = client.repository("acme/data").imports.get(JOB_ID)
    assert isinstance(job, ImportJob)
    assert job.status == "running"
