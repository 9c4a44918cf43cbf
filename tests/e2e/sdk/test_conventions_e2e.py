"""Issue 13 item 9 against a real server: one convention for each thing, and the old names still work."""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

import tilde

if TYPE_CHECKING:
    from tilde.server import LocalServer


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: LocalServer) -> Iterator[tilde.Client]:
    with tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as c:
        yield c


def test_members_delete_takes_a_username_or_a_user_id(client: tilde.Client, org_name: str) -> None:
    members = client.organizations.get(org_name).members
    alice, bob = unique_name("alice"), unique_name("bob")
    members.create(alice)
    bob_id = members.create(bob).user_id

    members.delete(alice)  # by username, as get() accepts
    members.delete(bob_id)  # by user id, as before

    names = {member.username for member in members.list()}
    assert alice not in names
    assert bob not in names
    with pytest.raises(tilde.NotFoundError):
        members.delete(alice)


@pytest.mark.sandbox
def test_execute_takes_network_like_shell(client: tilde.Client, repo_path: str) -> None:
    # The administrator holds UseSandboxNetwork; network goes through the egress proxy, never the host's
    # own network namespace, so a sandbox with network still has a namespace of its own.
    repo = client.repository(repo_path)
    own_namespace = os.readlink("/proc/self/ns/net")
    command = 'readlink /proc/self/ns/net; echo "proxy=${HTTP_PROXY:-none}"'

    with_network = repo.execute(command, network=True).stdout.text().split()
    isolated = repo.execute(command, network=False).stdout.text().split()
    default = repo.execute(command).stdout.text().split()

    assert with_network[0] != own_namespace
    assert with_network[1].startswith("proxy=http://127.0.0.1:")
    assert isolated[0] != own_namespace
    assert isolated[1] == "proxy=none"
    assert default[1] == "proxy=none"


@pytest.mark.sandbox
def test_process_wait_is_keyword_only_and_times_out_like_sandbox_wait(
    client: tilde.Client, repo_path: str
) -> None:
    repo = client.repository(repo_path)
    shell = repo.shell()
    try:
        shell.wait_until_running(timeout=60)
        ready = threading.Event()
        sleeper = shell.spawn("echo ready; exec sleep 60", on_stdout=lambda chunk: ready.set())
        assert ready.wait(30)

        with pytest.raises(tilde.SandboxError, match="still running") as caught:
            sleeper.wait(timeout=0.05)
        assert isinstance(caught.value, TimeoutError)  # handlers written for earlier releases still match

        with pytest.warns(DeprecationWarning, match="keyword"), pytest.raises(TimeoutError):
            sleeper.wait(0.05)  # the deprecated positional form

        sleeper.kill()
        quick = shell.spawn("echo done")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert quick.wait(timeout=60).stdout.text() == "done\n"
    finally:
        shell.cancel()
        shell.sandbox.wait(timeout=60)
