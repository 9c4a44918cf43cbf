"""``with repo.shell() as sh``: a clean exit waits for the commit; a failed start cancels; leaks warn."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from tilde.compute import Client, Repository, Shell
from tilde.core import SandboxError

pytestmark = pytest.mark.sandbox


@pytest.fixture
def client(server: Any) -> Iterator[Client]:
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as c:
        yield c


@pytest.fixture
def repo(client: Client, repo_path: str) -> Repository:
    return client.repository(repo_path)


def _head(repo: Repository) -> str | None:
    return next((commit.id for commit in repo.commits.list(amount=1)), None)


def test_a_clean_exit_waits_until_the_commit_is_visible(repo: Repository) -> None:
    with repo.shell() as sh:
        sh.run("echo kept > /sandbox/kept.txt", check=True)
    # No wait of our own: the block ended once the sandbox had committed.
    assert sh.result is not None
    assert sh.result.is_committed, sh.result
    assert sh.commit_id is not None
    assert _head(repo) == sh.commit_id
    assert repo.commits.get(sh.commit_id).objects.get("kept.txt").read() == b"kept\n"


def test_a_clean_exit_without_changes_reports_no_changes(repo: Repository) -> None:
    with repo.shell() as sh:
        sh.run("true", check=True)
    assert sh.result is not None
    assert sh.result.has_no_changes, sh.result
    assert sh.commit_id is None


def test_an_interrupted_start_cancels_the_sandbox(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    sh = repo.shell()

    def interrupted(**_: Any) -> Any:
        raise KeyboardInterrupt  # Ctrl-C while waiting for the sandbox to run

    monkeypatch.setattr(sh.sandbox, "wait_until_running", interrupted)
    with pytest.raises(KeyboardInterrupt), sh:
        pytest.fail("the block must not run")
    final = sh.sandbox.wait(timeout=60)
    assert final.state == "cancelled", final


def test_a_shell_collected_while_running_warns(repo: Repository) -> None:
    sh = repo.shell()
    sh.wait_until_running(timeout=60)
    sandbox = sh.sandbox
    with pytest.warns(ResourceWarning, match=f"sandbox {sandbox.id}"):
        del sh  # the last reference: collected at once
    sandbox.cancel()
    assert sandbox.wait(timeout=60).state == "cancelled"


def test_a_shell_that_ended_does_not_warn(repo: Repository, recwarn: pytest.WarningsRecorder) -> None:
    with repo.shell() as sh:
        pass
    del sh
    sh2 = repo.shell()
    sh2.cancel()
    sh2.sandbox.wait(timeout=60)
    del sh2
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


# -- corner cases of the final status, against a scripted server ---------------------------------------

BASE = "http://tilde.test/api/v1/organizations/acme/repositories/data/sandboxes"
SID = "5b1c7f0e-0000-4000-8000-000000000002"


@contextlib.contextmanager
def _scripted_shell(final: dict[str, Any]) -> Iterator[Shell]:
    """A shell whose sandbox runs until finished, then reports ``final``."""
    with (
        respx.mock(assert_all_called=False) as router,
        Client(endpoint_url="http://tilde.test", api_key="tuk-test") as client,
    ):
        router.post(BASE).mock(return_value=httpx.Response(201, json={"sandbox_id": SID}))
        finish = router.post(f"{BASE}/{SID}/finish").mock(return_value=httpx.Response(202, json={}))

        def status(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=final if finish.called else {"status": "running"})

        router.get(f"{BASE}/{SID}/status").mock(side_effect=status)
        yield client.repository("acme/data").shell()


def test_awaiting_approval_is_on_the_shell() -> None:
    final = {"status": "done", "status_reason": "awaiting_approval", "web_url": "http://x/approve"}
    with _scripted_shell(final) as sh, sh:
        pass
    assert sh.result is not None
    assert sh.result.is_awaiting_approval
    assert sh.result.web_url == "http://x/approve"
    assert sh.commit_id is None


def test_a_failed_commit_raises() -> None:
    final = {"status": "failed", "status_reason": "commit_failed", "error_message": "commit failed: conflict"}
    match = "failed/commit_failed instead of committing: commit failed"
    with _scripted_shell(final) as sh, pytest.raises(SandboxError, match=match), sh:
        pass
    assert sh.result is not None
    assert sh.result.status_reason == "commit_failed"
