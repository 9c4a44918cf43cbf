"""Secrets inside real sandboxes: precedence ``env=`` > agent secret > repository secret, nothing on disk."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from data_scan import files_containing
from secrets_helpers import agent_secrets_url, secrets_url

import tilde
from tilde.compute import Shell

pytestmark = pytest.mark.sandbox

REPO_ONLY = "repo-only-6f1c2b"
REPO_SHADOWED = "repo-shadowed-93ad0e"
REPO_BOTH = "repo-both-0b7e44"
AGENT_SHADOWED = "agent-shadowed-5d21aa"
AGENT_BOTH = "agent-both-c3f9e1"
ARGUMENT = "argument-77e0d2"


def _env(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture
def seeded(api: httpx.Client, repo_path: str, org_name: str, agent: dict[str, Any]) -> dict[str, Any]:
    """Repository secrets A, B, C; the agent's secrets B, C."""
    for key, value in (("A", REPO_ONLY), ("B", REPO_SHADOWED), ("C", REPO_BOTH)):
        assert api.put(f"{secrets_url(repo_path)}/{key}", json={"value": value}).status_code == 200
    for key, value in (("B", AGENT_SHADOWED), ("C", AGENT_BOTH)):
        url = agent_secrets_url(org_name, agent["name"])
        assert api.put(f"{url}/{key}", json={"value": value}).status_code == 200
    return agent


@pytest.fixture
def owner(server: Any) -> Iterator[tilde.Client]:
    with tilde.Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        yield client


def test_repository_secrets_reach_a_sandbox_below_env(
    owner: tilde.Client, repo_path: str, seeded: Any
) -> None:
    result = owner.repository(repo_path).execute("env", env={"C": ARGUMENT})
    env = _env(result.stdout.text())
    assert (env["A"], env["B"], env["C"]) == (REPO_ONLY, REPO_SHADOWED, ARGUMENT)
    assert AGENT_SHADOWED not in result.stdout.text()  # the caller is a user: no agent secrets


def test_an_agents_own_sandbox_gets_its_secrets_over_the_repositorys(
    server: Any, repo_path: str, seeded: dict[str, Any]
) -> None:
    with tilde.Client(endpoint_url=server.endpoint_url, api_key=seeded["token"]) as as_agent:
        result = as_agent.repository(repo_path).execute("env", env={"C": ARGUMENT})
    env = _env(result.stdout.text())
    assert (env["A"], env["B"], env["C"]) == (REPO_ONLY, AGENT_SHADOWED, ARGUMENT)


def _hex_env(shell: Shell, *names: str) -> dict[str, str]:
    """Read variables inside the sandbox as hex, so the values never appear in any output or log."""
    script = "; ".join(
        f'printf "%s=" {n}; printf "%s" "${n}" | od -An -tx1 | tr -d " \\n"; echo' for n in names
    )
    output = shell.run(script).stdout.text()
    return {name: bytes.fromhex(value).decode() for name, value in _env(output).items()}


@pytest.mark.backends("local", "postgres")  # scans the one data directory where the server runs the sandbox
def test_run_as_an_agent_gets_its_secrets_and_none_touch_the_disk(
    owner: tilde.Client, server: Any, api: httpx.Client, repo_path: str, org_name: str, agent: dict[str, Any]
) -> None:
    values = {name: f"{name.lower()}-{uuid.uuid4().hex}" for name in ("A", "B", "C", "AGENT_B", "AGENT_C")}
    for key in ("A", "B", "C"):
        assert api.put(f"{secrets_url(repo_path)}/{key}", json={"value": values[key]}).status_code == 200
    for key in ("B", "C"):
        url = agent_secrets_url(org_name, agent["name"])
        assert api.put(f"{url}/{key}", json={"value": values[f"AGENT_{key}"]}).status_code == 200
    sandbox = owner.repository(repo_path).sandboxes.create(
        image="ubuntu:22.04", mode="service", env={"C": ARGUMENT}, run_as={"type": "agent", "id": agent["id"]}
    )
    shell = Shell(owner, sandbox)
    try:
        shell.wait_until_running(timeout=60)
        env = _hex_env(shell, "A", "B", "C")
        assert env == {"A": values["A"], "B": values["AGENT_B"], "C": ARGUMENT}
        # While it runs: no file of the data directory (the sandbox's run directory with agent.json, the
        # registry and its WAL included) holds an injected secret in clear.
        assert files_containing(server.data_dir, values) == {}
    finally:
        shell.cancel()
        sandbox.wait(timeout=60)
    assert files_containing(server.data_dir, values) == {}
