"""Sandboxes, execute() and Shell start-up over mocked REST calls."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import respx

from tilde.compute import Client, Repository, SandboxStatus
from tilde.compute import _sandboxes as sandboxes_module
from tilde.core import CommandError, SandboxError

ENDPOINT = "http://tilde.test"
REPO = f"{ENDPOINT}/api/v1/organizations/acme/repositories/data"
SID = "0b6e1c1e-0000-4000-8000-0000000000aa"
S = f"{REPO}/sandboxes/{SID}"


@pytest.fixture
def repo() -> Iterator[Repository]:
    with Client(
        endpoint_url=ENDPOINT, api_key="tuk-test", max_retries=0, default_sandbox_image="img:1"
    ) as client:
        yield client.repository("acme/data")


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(sandboxes_module.time, "sleep", slept.append)
    return slept


def _status(status: str, reason: str = "", **extra: object) -> httpx.Response:
    return httpx.Response(200, json={"status": status, "status_reason": reason, **extra})


def test_execute_learns_of_completion_through_the_long_poll(repo: Repository, no_sleep: list[float]) -> None:
    with respx.mock() as router:
        create = router.post(f"{REPO}/sandboxes").mock(
            return_value=httpx.Response(201, json={"sandbox_id": SID})
        )
        status = router.get(f"{S}/status").mock(
            return_value=_status("done", "committed", exit_code=0, commit_id="c1")
        )
        router.get(f"{S}/logs/stdout").mock(return_value=httpx.Response(200, content=b"out\nerr\n"))
        result = repo.execute("python job.py", env={"A": "1"}, timeout=60, path_prefix="in/")
    assert json.loads(create.calls[0].request.content) == {
        "image": "img:1",
        "command": ["sh", "-c", "python job.py"],
        "env_vars": {"A": "1"},
        "path_prefix": "in/",
        "timeout_seconds": 60,
    }
    params = status.calls[0].request.url.params
    assert params["wait"] == "20"
    assert "while" not in params
    assert status.call_count == 1
    assert no_sleep == []
    assert result.stdout == b"out\nerr\n"
    assert result.stderr == b""
    assert result.exit_code == 0


def test_execute_falls_back_to_polling_when_the_server_ignores_wait(
    repo: Repository, no_sleep: list[float]
) -> None:
    with respx.mock() as router:
        router.post(f"{REPO}/sandboxes").mock(return_value=httpx.Response(201, json={"sandbox_id": SID}))
        status = router.get(f"{S}/status").mock(
            side_effect=[
                _status("starting", "created"),
                _status("running"),
                _status("errored", "exit_non_zero", exit_code=2),
            ]
        )
        router.get(f"{S}/logs/stdout").mock(return_value=httpx.Response(200, content=b"boom\n"))
        with pytest.raises(CommandError) as info:
            repo.execute(["false"])
    assert status.call_count == 3
    assert "wait" in status.calls[0].request.url.params
    assert "wait" not in status.calls[1].request.url.params
    assert no_sleep == [1.0]
    assert info.value.result.exit_code == 2
    assert info.value.result.stdout == b"boom\n"
    assert info.value.command == "false"


def test_execute_without_check_and_missing_logs(repo: Repository, no_sleep: list[float]) -> None:
    with respx.mock() as router:
        router.post(f"{REPO}/sandboxes").mock(return_value=httpx.Response(201, json={"sandbox_id": SID}))
        router.get(f"{S}/status").mock(
            return_value=_status("failed", "image_not_found", error_message="no image")
        )
        router.get(f"{S}/logs/stdout").mock(return_value=httpx.Response(410, json={"message": "expired"}))
        result = repo.execute("x", check=False)
    assert result.exit_code == -1
    assert result.stdout == b""


def test_execute_warns_when_approval_is_required(repo: Repository, no_sleep: list[float]) -> None:
    with respx.mock() as router:
        router.post(f"{REPO}/sandboxes").mock(return_value=httpx.Response(201, json={"sandbox_id": SID}))
        router.get(f"{S}/status").mock(
            return_value=_status("done", "awaiting_approval", exit_code=0, web_url="https://app/approve/1")
        )
        router.get(f"{S}/logs/stdout").mock(return_value=httpx.Response(200, content=b""))
        with pytest.warns(UserWarning, match="https://app/approve/1"):
            result = repo.execute("x")
    assert result.exit_code == 0


def test_wait_gives_up_at_the_deadline(repo: Repository, no_sleep: list[float]) -> None:
    with respx.mock() as router:
        router.get(f"{S}/status").mock(return_value=_status("running"))
        with pytest.raises(SandboxError, match="still running"):
            repo.sandboxes.get(SID).wait(timeout=0)


def test_shell_creates_a_service_sandbox_and_waits_while_starting(
    repo: Repository, no_sleep: list[float]
) -> None:
    with respx.mock() as router:
        create = router.post(f"{REPO}/sandboxes").mock(
            return_value=httpx.Response(201, json={"sandbox_id": SID})
        )
        status = router.get(f"{S}/status").mock(return_value=_status("running"))
        cancel = router.delete(S).mock(return_value=httpx.Response(202, json={"message": "cancelling"}))
        shell = repo.shell(image="python:3.12", network=True)
        assert create.call_count == 1
        assert json.loads(create.calls[0].request.content) == {
            "image": "python:3.12",
            "mode": "service",
            "network": True,
        }

        def use_and_fail() -> None:
            with shell as sh:
                assert sh is shell
                raise RuntimeError("inside")

        with pytest.raises(RuntimeError, match="inside"):
            use_and_fail()
    assert status.calls[0].request.url.params["while"] == "starting"
    assert cancel.call_count == 1
    assert repr(shell) == f"Shell(sandbox='{SID}')"


def test_shell_that_ends_before_running_raises(repo: Repository, no_sleep: list[float]) -> None:
    with respx.mock() as router:
        router.post(f"{REPO}/sandboxes").mock(return_value=httpx.Response(201, json={"sandbox_id": SID}))
        router.get(f"{S}/status").mock(
            return_value=_status("failed", "internal_error", error_message="no bwrap")
        )
        shell = repo.shell()
        with pytest.raises(
            SandboxError, match="terminal state failed/internal_error before running: no bwrap"
        ):
            shell.__enter__()


def test_sandbox_status_parsing_properties_and_repr() -> None:
    status = SandboxStatus.from_dict(
        {"status": "done", "status_reason": "committed", "exit_code": 0, "commit_id": "c"}
    )
    assert (status.is_terminal, status.is_active, status.is_committed) == (True, False, True)
    assert not status.is_awaiting_approval
    assert not status.has_no_changes
    assert (
        repr(status) == "SandboxStatus(state='done', status_reason='committed', exit_code=0, commit_id='c')"
    )
    running = SandboxStatus.from_dict({"status": "running", "exit_code": None, "web_url": None})
    assert running.is_active
    assert repr(running) == "SandboxStatus(state='running')"
    assert SandboxStatus.from_dict({"status": "done", "status_reason": "no_changes"}).has_no_changes
    assert SandboxStatus.from_dict({"exit_code": "x"}).exit_code is None
    with pytest.raises(RuntimeError, match="not bound"):
        running.stdout()


def test_log_stream_lines_only_inside_with(repo: Repository) -> None:
    with respx.mock() as router:
        router.get(f"{S}/logs/network").mock(
            return_value=httpx.Response(200, content=b'{"decision":"deny","url":"https://a"}\n')
        )
        log = SandboxStatus.from_dict(
            {"status": "done"}, client=repo._client, sandbox_path=repo.sandboxes.get(SID)._path
        ).network()
        with pytest.raises(RuntimeError, match="with"):
            list(log)
        with log:
            assert [json.loads(line) for line in log] == [{"decision": "deny", "url": "https://a"}]
    assert (
        repr(log) == f"LogStream(path='/organizations/acme/repositories/data/sandboxes/{SID}/logs/network')"
    )


def test_sandboxes_list_create_finish_cancel(repo: Repository) -> None:
    with respx.mock() as router:
        router.get(f"{REPO}/sandboxes").mock(
            return_value=httpx.Response(
                200, json={"results": [{"id": "a"}, {"id": "b"}], "pagination": {"has_more": False}}
            )
        )
        create = router.post(f"{REPO}/sandboxes").mock(
            return_value=httpx.Response(201, json={"sandbox_id": SID})
        )
        finish = router.post(f"{S}/finish").mock(return_value=httpx.Response(202, json={}))
        cancel = router.delete(S).mock(return_value=httpx.Response(202, json={}))
        assert [s.id for s in repo.sandboxes.list()] == ["a", "b"]
        sandbox = repo.sandboxes.create(image="i", command="echo", run_as={"type": "agent", "id": "x"})
        sandbox.finish()
        sandbox.delete()
    assert json.loads(create.calls[0].request.content) == {
        "image": "i",
        "command": ["sh", "-c", "echo"],
        "run_as": {"type": "agent", "id": "x"},
    }
    assert (finish.call_count, cancel.call_count) == (1, 1)
    assert repr(sandbox) == f"Sandbox(id='{SID}')"
    assert repr(repo.sandboxes) == "Sandboxes(acme/data)"
