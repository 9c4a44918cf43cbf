"""``run_as`` needs RunAs for that agent or role; a sandbox token never exceeds its run-as principal."""

from __future__ import annotations

import httpx
import pytest
from iam_helpers import IamOrg, assert_forbidden

pytestmark = pytest.mark.sandbox


def test_run_as_needs_run_as_for_that_agent(iam: IamOrg) -> None:
    repo = iam.repository()
    chosen, _ = iam.agent(inline_policy="*()")
    other, _ = iam.agent(inline_policy="*()")
    user_id, member = iam.user()
    policy_id = iam.policy("CreateSandbox()\nCreateSandboxTrigger()")
    iam.attach(policy_id, "user", user_id)

    def start(agent_id: str) -> httpx.Response:
        body = {"image": "i", "command": ["true"], "run_as": {"type": "agent", "id": agent_id}}
        return member.post(f"{repo}/sandboxes", json=body)

    assert_forbidden(start(chosen["id"]), "RunAs")
    trigger = {
        "name": "t",
        "conditions": [{"type": "prefix", "prefix": "x/"}],
        "sandbox_config": {"image": "i"},
        "run_as": {"type": "agent", "id": chosen["id"]},
    }
    assert_forbidden(member.post(f"{repo}/sandbox-triggers", json=trigger), "RunAs")
    iam.set_policy(policy_id, f'CreateSandbox()\nCreateSandboxTrigger()\nRunAs(agent="{chosen["name"]}")')
    sandbox_id = iam.ok(start(chosen["id"]), 201)["sandbox_id"]
    iam.ok(member.post(f"{repo}/sandbox-triggers", json=trigger), 201)
    assert_forbidden(start(other["id"]), "RunAs")
    iam.wait_sandbox(repo, sandbox_id)


PROBE = """
import json, os, urllib.error, urllib.request
creds = json.load(urllib.request.urlopen(os.environ["TILDE_SANDBOX_CREDENTIALS_URI"]))
org, repo = os.environ["TILDE_REPOSITORY"].split("/")
base = f"{os.environ['TILDE_API_URL']}/api/v1/organizations/{org}/repositories/{repo}"
sid = os.environ["TILDE_SESSION_ID"]
auth = {"Authorization": "Bearer " + creds["access_token"]}

def status(method, url):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=auth)) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code

found = {
    "read": status("GET", f"{base}/object?path=seed.txt&session_id={sid}"),
    "write": status("PUT", f"{base}/object?session_id={sid}&path=new.txt"),
    "other_repo": status("GET", base.rsplit("/", 1)[0] + "/" + os.environ["OTHER"] + "/object?path=seed.txt"),
}
print(json.dumps(found))
# The exit code carries the outcome (1: read allowed, 2: write allowed, 4: other repository allowed, 8: some
# answer was neither 200 nor 403), so the test needs no log that a busy runtime may already have dropped.
code = sum(bit for bit, key in ((1, "read"), (2, "write"), (4, "other_repo")) if found[key] == 200)
raise SystemExit(code + (8 if set(found.values()) - {200, 403} else 0))
"""


def test_a_sandbox_token_never_exceeds_its_run_as_principal(iam: IamOrg) -> None:
    repo, other = iam.repository(), iam.repository()
    iam.commit(repo, {"seed.txt": b"seed"})
    iam.commit(other, {"seed.txt": b"seed"})
    reader, _ = iam.agent()
    iam.attach(iam.builtin("ReadOnly"), "agent", reader["id"])
    writer, _ = iam.agent(inline_policy="*()")
    outcomes = {}
    for agent in (reader, writer):
        body = {
            "image": "i",
            "command": ["python3", "-c", PROBE],
            "run_as": {"type": "agent", "id": agent["id"]},
            "env_vars": {"OTHER": other.rsplit("/", 1)[1]},
        }
        sandbox_id = iam.ok(iam.admin.post(f"{repo}/sandboxes", json=body), 201)["sandbox_id"]
        outcomes[agent["name"]] = iam.wait_sandbox(repo, sandbox_id)["exit_code"]
    # The reader's sandbox may read but not write, although the sandbox's own session is open to writes;
    # neither may touch another repository.
    assert outcomes == {reader["name"]: 1, writer["name"]: 3}
