"""Sandbox routes beyond the basic lifecycle: live logs, listing, run_as, status long-poll semantics."""

from __future__ import annotations

import time

import httpx
import pytest
from sandbox_helpers import Sandboxes, repo_url

pytestmark = pytest.mark.sandbox


def test_stdout_log_streams_while_running(sandboxes: Sandboxes) -> None:
    sid = sandboxes.create(command=["sh", "-c", "echo first; sleep 3; echo second"])
    with sandboxes.api.stream("GET", f"{sandboxes.base}/{sid}/logs/stdout") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        chunks = response.iter_bytes()
        received = b""
        while b"first\n" not in received:
            received += next(chunks)
        # "first" arrived while the command was still sleeping.
        assert sandboxes.status(sid)["status"] == "running"
        for chunk in chunks:
            received += chunk
    assert received == b"first\nsecond\n"
    assert sandboxes.status(sid)["status"] == "done"


def test_status_long_poll_returns_at_the_change(sandboxes: Sandboxes) -> None:
    sid = sandboxes.create(command=["sleep", "1"])
    started = time.monotonic()
    body = sandboxes.status(sid, wait=30)
    assert body["status"] == "done"
    assert time.monotonic() - started < 20
    # `while` names the status to wait out; a status that is not current answers at once.
    assert sandboxes.status(sid, wait=30, **{"while": "running"})["status"] == "done"
    bad = sandboxes.api.get(f"{sandboxes.base}/{sid}/status", params={"wait": "soon"})
    assert bad.status_code == 400


def test_listing_pages_through_sandboxes(sandboxes: Sandboxes) -> None:
    ids = [sandboxes.create(command=["true"]) for _ in range(3)]
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, object] = {"amount": 2}
        if after:
            params["after"] = after
        page = sandboxes.api.get(sandboxes.base, params=params).json()
        seen += [item["id"] for item in page["results"]]
        if not page["pagination"]["has_more"]:
            break
        after = page["pagination"]["next_offset"]
    assert seen == ids
    for sid in ids:
        sandboxes.wait(sid)


def test_run_as_an_agent_commits_as_that_agent(
    api: httpx.Client, repo_path: str, sandboxes: Sandboxes
) -> None:
    org, _ = repo_path.split("/")
    agent = api.post(f"/organizations/{org}/agents", json={"name": "runner"}).json()
    status, log = sandboxes.run_once("echo x > x.txt", run_as={"type": "agent", "id": agent["id"]})
    assert status["status_reason"] == "committed", log
    commit = api.get(f"{repo_url(repo_path)}/commits/{status['commit_id']}").json()
    assert (commit["committer_type"], commit["committer_id"]) == ("agent", agent["id"])
    unknown = api.post(
        sandboxes.base,
        json={
            "image": "x",
            "command": ["true"],
            "run_as": {"type": "agent", "id": "00000000-0000-4000-8000-000000000000"},
        },
    )
    assert unknown.status_code == 400


SANDBOX_CREATE = """
import json, os, urllib.request
creds = json.load(urllib.request.urlopen(os.environ["TILDE_SANDBOX_CREDENTIALS_URI"]))
org, repo = os.environ["TILDE_REPOSITORY"].split("/")
url = f"{os.environ['TILDE_API_URL']}/api/v1/organizations/{org}/repositories/{repo}/sandboxes"
headers = {"Authorization": "Bearer " + creds["access_token"], "Content-Type": "application/json"}
body = json.dumps({"image": "x", "command": ["true"]}).encode()
try:
    urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST", headers=headers))
except urllib.error.HTTPError as error:
    print(error.code)
"""


def test_sandbox_tokens_cannot_manage_sandboxes(sandboxes: Sandboxes) -> None:
    status, log = sandboxes.run_once(["python3", "-c", SANDBOX_CREATE])
    assert status["status"] == "done", log
    assert log == "403\n"
