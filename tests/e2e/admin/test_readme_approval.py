"""The published README's "Agent Approval Workflow", with our SDK, as an agent, against a real tilde-server.

Substituted: ``repo`` is the agent's handle on a repository created (over raw HTTP, since the SDK's
``create`` has no such option) with ``agent_commits_require_approval``; the agent's key comes from
``agent.api_keys.create`` and its inline policy grants what writing and committing need. The human who
approves is the server's admin, over raw HTTP (the SDK has no approve call).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

import tilde
from tilde.models import Repository

if TYPE_CHECKING:
    from tilde.server import LocalServer

APPROVAL_TIMEOUT = 60.0
WRITER_POLICY = """\
# What an agent needs to write and commit through a session.
GetRepository()
CreateSession()
PutObject()
GetObject()
ListObjects()
CommitSession()
RollbackSession()
"""


@dataclass
class Guarded:
    """A repository requiring approval for agent commits, seen by its agent and by a human."""

    agent_repo: Repository
    admin_repo: Repository
    human: httpx.Client  # the admin, on the repository's API path

    def pending(self, session_id: str) -> bool:
        return self.human.head(f"sessions/{session_id}/approve").status_code == 200

    def approve_when_parked(self, session_id: str) -> str:
        """Wait (with a deadline) until the session waits for approval, approve it, return the commit id."""
        deadline = time.monotonic() + APPROVAL_TIMEOUT
        while not self.pending(session_id):
            assert time.monotonic() < deadline, "the agent's commit never asked for approval"
            time.sleep(0.05)
        approved = self.human.post(f"sessions/{session_id}/approve", json={})
        assert approved.status_code == 200, approved.text
        commit_id: str = approved.json()["commit_id"]
        return commit_id


@pytest.fixture
def guarded(server: LocalServer, org_name: str) -> Iterator[Guarded]:
    base = f"{server.endpoint_url}/api/v1/organizations/{org_name}"
    with tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as admin:
        org = admin.organizations.get(org_name)
        name = f"guarded-{uuid.uuid4().hex[:8]}"
        with httpx.Client(headers={"Authorization": f"Bearer {server.api_key}"}, timeout=60) as http:
            created = http.post(
                f"{base}/repositories",
                json={"name": name, "visibility": "private", "agent_commits_require_approval": True},
            )
            assert created.status_code == 201, created.text
        agent = org.agents.create("data-pipeline", description="writes results")
        agent.update(inline_policy=WRITER_POLICY)
        token = agent.api_keys.create("pipeline-key").token
        with (
            tilde.Client(api_key=token, endpoint_url=server.endpoint_url) as as_agent,
            httpx.Client(
                base_url=f"{base}/repositories/{name}/",
                headers={"Authorization": f"Bearer {server.api_key}"},
                timeout=60,
            ) as human,
        ):
            yield Guarded(
                as_agent.repository(f"{org_name}/{name}"), admin.repository(f"{org_name}/{name}"), human
            )


def read(repo: Repository, path: str) -> bytes:
    commit = next(repo.commits.list())
    with commit.objects.get(path) as f:
        data: bytes = f.read()
    return data


@pytest.mark.timeout(120)
def test_blocking_commit_waits_for_the_human(guarded: Guarded) -> None:
    repo = guarded.agent_repo
    approvals: list[str] = []
    with repo.session() as session:
        approver = threading.Thread(
            target=lambda: approvals.append(guarded.approve_when_parked(session.session_id)), daemon=True
        )
        approver.start()
        session.objects.put("data/results.csv", b"col1,col2\na,b\n")
        with pytest.warns(UserWarning, match="Approval required") as warned:
            result = session.commit("add results")  # blocks until approved
        approver.join(timeout=APPROVAL_TIMEOUT)
    assert result == ""  # approval was needed, and waited for
    assert session.session_id in str(warned[0].message)
    assert len(approvals) == 1
    log = list(guarded.admin_repo.commits.list())
    assert [(c.id, c.message, c.committer_type) for c in log] == [(approvals[0], "add results", "agent")]
    assert read(guarded.admin_repo, "data/results.csv") == b"col1,col2\na,b\n"


@pytest.mark.timeout(120)
def test_blocking_commit_ends_when_the_human_rolls_back(guarded: Guarded) -> None:
    repo = guarded.agent_repo
    session = repo.session()
    session.objects.put("data/results.csv", b"col1,col2\na,b\n")
    rejected = threading.Event()

    def reject() -> None:
        deadline = time.monotonic() + APPROVAL_TIMEOUT
        while not guarded.pending(session.session_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        if guarded.human.delete(f"sessions/{session.session_id}").status_code == 204:
            rejected.set()

    rejecter = threading.Thread(target=reject, daemon=True)
    rejecter.start()
    with pytest.warns(UserWarning, match="Approval required"):
        assert session.commit("add results") == ""  # returns once the human has decided
    rejecter.join(timeout=APPROVAL_TIMEOUT)
    assert rejected.is_set()
    assert list(guarded.admin_repo.commits.list()) == []


def test_non_blocking_commit_leaves_the_session_for_review(guarded: Guarded) -> None:
    session = guarded.agent_repo.session()
    session.objects.put("data/results.csv", b"col1,col2\na,b\n")

    with pytest.warns(UserWarning, match="Approval required"):
        result = session.commit("add results", block_for_approval=False)
    # result is None; session stays open for review
    assert result is None
    assert guarded.pending(session.session_id)
    review = guarded.human.get(f"sessions/{session.session_id}/approve")
    assert [p["path"] for p in review.json()["results"]] == ["data/results.csv"]
    assert list(guarded.admin_repo.commits.list()) == []

    # The human turns it down: nothing is committed and the approval is resolved.
    assert guarded.human.delete(f"sessions/{session.session_id}").status_code == 204
    assert not guarded.pending(session.session_id)
    assert list(guarded.admin_repo.commits.list()) == []


def test_structured_commit_result(guarded: Guarded, org_name: str) -> None:
    session = guarded.agent_repo.session()
    session.objects.put("data/results.csv", b"col1,col2\na,b\n")

    result = session.commit_result("add results")
    if result.status == "committed":
        print(result.commit_id)
    elif result.status == "approval_required":
        print(result.web_url)
    assert (result.status, result.commit_id) == ("approval_required", None)
    assert result.web_url
    assert session.session_id in result.web_url

    commit_id = guarded.approve_when_parked(session.session_id)
    assert next(guarded.admin_repo.commits.list()).id == commit_id

    # A human's commit on the same repository is not parked.
    with guarded.admin_repo.session() as own:
        own.objects.put("data/human.csv", b"x\n")
        mine = own.commit_result("by hand")
    assert mine.status == "committed"
    assert mine.commit_id == next(guarded.admin_repo.commits.list()).id
