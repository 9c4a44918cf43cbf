"""``tilde mcp`` end to end: the ``mcp`` package's own client talks to ``python -m tilde mcp`` over stdio.

The server process gets its credentials the way a desktop client would give them: ``TILDE_ENDPOINT_URL`` and
``TILDE_API_KEY`` in its environment, pointing at the session's real `tilde.server.LocalServer`.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

if TYPE_CHECKING:
    from mcp.types import CallToolResult

    from tilde.server import LocalServer

WRITE_TOOLS = {
    "open_session",
    "put_object",
    "copy_object",
    "delete_object",
    "show_changes",
    "commit_session",
    "rollback_session",
    "revert_commit",
    "execute",
    "shell_start",
    "shell_run",
    "shell_finish",
    "shell_cancel",
}
READ_TOOLS = {"list_repositories", "list_objects", "read_object", "log", "diff"}


class Mcp:
    """A connected client with helpers that unwrap tool results."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def tool_names(self) -> set[str]:
        return {tool.name for tool in (await self.session.list_tools()).tools}

    async def raw(self, name: str, **arguments: Any) -> CallToolResult:
        return await self.session.call_tool(name, arguments)

    async def call(self, name: str, **arguments: Any) -> dict[str, Any]:
        result = await self.raw(name, **arguments)
        assert not result.is_error, _text(result)
        data = result.structured_content
        assert isinstance(data, dict), result
        return data

    async def error(self, name: str, **arguments: Any) -> str:
        result = await self.raw(name, **arguments)
        assert result.is_error, result
        return _text(result)


def _text(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


@asynccontextmanager
async def _connect(server: LocalServer, log: Path, key: str, *args: str) -> AsyncIterator[Mcp]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tilde", "mcp", *args],
        env={"TILDE_ENDPOINT_URL": server.endpoint_url, "TILDE_API_KEY": key},
    )
    with log.open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield Mcp(session)


def run(
    server: LocalServer,
    tmp_path: Path,
    body: Callable[[Mcp], Awaitable[None]],
    *args: str,
    key: str | None = None,
) -> None:
    async def main() -> None:
        with anyio.fail_after(240):
            async with _connect(server, tmp_path / "mcp-server.log", key or server.api_key, *args) as client:
                await body(client)

    anyio.run(main)


@pytest.mark.sandbox
def test_read_change_commit_run_verify(server: LocalServer, repo_path: str, tmp_path: Path) -> None:
    async def body(mcp: Mcp) -> None:
        assert await mcp.tool_names() == READ_TOOLS | WRITE_TOOLS

        opened = await mcp.call("open_session", repository=repo_path)
        session_id = opened["session_id"]
        files = {"a.txt": "alpha\n", "data/b.csv": "x,y\n1,2\n", "data/c.md": "# Ünïcode\n"}
        for path, text in files.items():
            staged = await mcp.call("put_object", session_id=session_id, path=path, content=text)
            assert staged["staged"] is True
        changes = await mcp.call("show_changes", session_id=session_id)
        assert sorted(c["path"] for c in changes["changes"]) == sorted(files)
        assert {c["change"] for c in changes["changes"]} == {"put"}
        inside = await mcp.call("read_object", repository=repo_path, path="a.txt", session_id=session_id)
        assert inside["text"] == "alpha\n"

        committed = await mcp.call("commit_session", session_id=session_id, message="three files")
        assert committed["status"] == "committed"
        first = committed["commit_id"]
        assert await mcp.error("show_changes", session_id=session_id)  # the session is closed now

        for path, text in files.items():
            read = await mcp.call("read_object", repository=repo_path, path=path)
            assert read["text"] == text
            assert read["truncated"] is False
        ranged = await mcp.call("read_object", repository=repo_path, path="data/b.csv", offset=4, max_bytes=3)
        assert (ranged["text"], ranged["size"], ranged["truncated"]) == ("1,2", 8, True)
        listing = await mcp.call("list_objects", repository=repo_path)
        assert [(e["path"], e["type"]) for e in listing["entries"]] == [
            ("a.txt", "object"),
            ("data/", "prefix"),
        ]
        resource = await mcp.session.read_resource(f"tilde://{repo_path}@{first}/data/c.md")
        assert getattr(resource.contents[0], "text", None) == "# Ünïcode\n"

        ran = await mcp.call(
            "execute",
            repository=repo_path,
            command="cat /sandbox/a.txt; echo beta >> /sandbox/a.txt",
        )
        assert (ran["exit_code"], ran["outcome"]) == (0, "committed")
        assert ran["output"]["text"] == "alpha\n"
        second = ran["commit_id"]
        history = await mcp.call("log", repository=repo_path, limit=5)
        assert [c["id"] for c in history["commits"][:2]] == [second, first]
        changed = await mcp.call("read_object", repository=repo_path, path="a.txt", ref=second)
        assert changed["text"] == "alpha\nbeta\n"
        before = await mcp.call("read_object", repository=repo_path, path="a.txt", ref=first)
        assert before["text"] == "alpha\n"
        diff = await mcp.call("diff", repository=repo_path, from_ref=first, to_ref=second)
        assert [(c["path"], c["status"]) for c in diff["changes"]] == [("a.txt", "modified")]

        failed = await mcp.call("execute", repository=repo_path, command="echo x > /sandbox/a.txt; exit 3")
        assert (failed["exit_code"], failed["outcome"], failed["commit_id"]) == (3, "rolled_back", None)
        latest = await mcp.call("log", repository=repo_path, limit=1)
        assert latest["commits"][0]["id"] == second

    run(server, tmp_path, body)


@pytest.mark.sandbox
def test_shell_steps_and_revert(server: LocalServer, repo_path: str, tmp_path: Path) -> None:
    async def body(mcp: Mcp) -> None:
        seeding = (await mcp.call("open_session", repository=repo_path))["session_id"]
        await mcp.call("put_object", session_id=seeding, path="seed.txt", content="seed")
        await mcp.call("commit_session", session_id=seeding, message="seed")
        started = await mcp.call("shell_start", repository=repo_path)
        sandbox_id = started["sandbox_id"]
        step = await mcp.call("shell_run", sandbox_id=sandbox_id, command="echo one > /sandbox/one.txt")
        assert step["exit_code"] == 0
        step = await mcp.call(
            "shell_run", sandbox_id=sandbox_id, command="cat one.txt; exit 4", cwd="/sandbox"
        )
        assert (step["exit_code"], step["stdout"]["text"]) == (4, "one\n")
        finished = await mcp.call("shell_finish", sandbox_id=sandbox_id)
        assert finished["outcome"] == "committed"
        commit_id = finished["commit_id"]
        assert (await mcp.call("read_object", repository=repo_path, path="one.txt"))["text"] == "one\n"
        assert "no running shell" in await mcp.error("shell_run", sandbox_id=sandbox_id, command="true")

        reverted = await mcp.call("revert_commit", repository=repo_path, commit_id=commit_id, message="undo")
        assert reverted["status"] == "committed"
        assert "404" in await mcp.error("read_object", repository=repo_path, path="one.txt")

        cancelled = await mcp.call("shell_start", repository=repo_path)
        await mcp.call("shell_run", sandbox_id=cancelled["sandbox_id"], command="echo two > /sandbox/two.txt")
        assert (await mcp.call("shell_cancel", sandbox_id=cancelled["sandbox_id"]))[
            "outcome"
        ] == "rolled_back"
        latest = await mcp.call("log", repository=repo_path, limit=1)
        assert latest["commits"][0]["id"] == reverted["commit_id"]

    run(server, tmp_path, body)


def test_read_only_offers_and_does_no_writes(server: LocalServer, repo_path: str, tmp_path: Path) -> None:
    from tilde import Client

    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        repo = client.repository(repo_path)
        with repo.session() as session:
            session.objects.put("kept.txt", b"kept")
            session.commit("seed")

    async def body(mcp: Mcp) -> None:
        assert await mcp.tool_names() == READ_TOOLS
        refused = await mcp.error("open_session", repository=repo_path)
        assert "open_session" in refused
        refused = await mcp.error("execute", repository=repo_path, command="rm -f /sandbox/kept.txt")
        assert "execute" in refused
        assert (await mcp.call("read_object", repository=repo_path, path="kept.txt"))["text"] == "kept"
        assert len((await mcp.call("log", repository=repo_path))["commits"]) == 1

    run(server, tmp_path, body, "--read-only")


def test_repo_option_limits_what_is_exposed(
    server: LocalServer, api: Any, org_name: str, repo_path: str, tmp_path: Path
) -> None:
    other = f"{org_name}/hidden-repo"
    response = api.post(f"/organizations/{org_name}/repositories", json={"name": "hidden-repo"})
    assert response.status_code == 201, response.text

    async def body(mcp: Mcp) -> None:
        listed = await mcp.call("list_repositories")
        assert listed["repositories"] == [{"repository": repo_path}]
        for name, arguments in (
            ("list_objects", {"repository": other}),
            ("log", {"repository": other}),
            ("open_session", {"repository": other}),
        ):
            message = await mcp.error(name, **arguments)
            assert f"repository {other} is not exposed by this server" in message
        assert (await mcp.call("list_objects", repository=repo_path))["entries"] == []
        with pytest.raises(Exception, match="not exposed"):
            await mcp.session.read_resource(f"tilde://{other}/x.txt")

    run(server, tmp_path, body, "--repo", repo_path)


def test_errors_come_back_as_tool_errors(server: LocalServer, repo_path: str, tmp_path: Path) -> None:
    async def body(mcp: Mcp) -> None:
        missing = await mcp.error("read_object", repository=repo_path, path="nope.txt")
        assert "404" in missing
        assert "bad repository" in await mcp.error("log", repository="not a repo")
        assert "no open session" in await mcp.error("put_object", session_id="s-1", path="a", content="x")
        session_id = (await mcp.call("open_session", repository=repo_path))["session_id"]
        await mcp.call(
            "put_object", session_id=session_id, path="bin.dat", content="AAEC/w==", encoding="base64"
        )
        assert "not valid base64" in await mcp.error(
            "put_object", session_id=session_id, path="x", content="***", encoding="base64"
        )
        assert (await mcp.call("rollback_session", session_id=session_id))["status"] == "rolled_back"
        unknown = await mcp.error("diff", repository=repo_path, from_ref="0" * 64, to_ref="1" * 64)
        assert "HTTP" in unknown
        # The server is still serving after all of that.
        assert (await mcp.call("list_objects", repository=repo_path))["entries"] == []
        listed = await mcp.call("list_repositories")
        assert {"repository": repo_path, "description": ""} in listed["repositories"]
        assert json.dumps(listed)

    run(server, tmp_path, body)


def test_a_commit_that_needs_approval_awaits_it(
    server: LocalServer, api: Any, org_name: str, tmp_path: Path
) -> None:
    created = api.post(
        f"/organizations/{org_name}/repositories",
        json={"name": "guarded", "visibility": "private", "agent_commits_require_approval": True},
    )
    assert created.status_code == 201, created.text
    made = api.post(f"/organizations/{org_name}/agents", json={"name": "helper", "description": "bot"})
    assert made.status_code == 201, made.text
    granted = api.put(f"/organizations/{org_name}/agents/helper", json={"inline_policy": "*()"})
    assert granted.status_code == 200, granted.text
    issued = api.post(f"/organizations/{org_name}/agents/helper/auth/keys", json={"name": "mcp"})
    assert issued.status_code == 201, issued.text
    repo_path = f"{org_name}/guarded"

    async def body(mcp: Mcp) -> None:
        session_id = (await mcp.call("open_session", repository=repo_path))["session_id"]
        await mcp.call("put_object", session_id=session_id, path="report.csv", content="a,b\n1,2\n")
        parked = await mcp.call("commit_session", session_id=session_id, message="nightly report")
        assert parked["status"] == "awaiting_approval"
        assert session_id in parked["web_url"]
        assert parked["web_url"] in parked["note"]
        assert (await mcp.call("log", repository=repo_path))["commits"] == []

    run(server, tmp_path, body, key=issued.json()["token"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"tilde mcp --http did not listen on {port}: {log.read_text()}")


def test_streamable_http(server: LocalServer, repo_path: str, tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "mcp-http.log"
    env = {**os.environ, "TILDE_ENDPOINT_URL": server.endpoint_url, "TILDE_API_KEY": server.api_key}
    command = [sys.executable, "-m", "tilde", "mcp", "--http", str(port), "--read-only", "--repo", repo_path]
    with log.open("wb") as errlog:
        process = subprocess.Popen(command, env=env, stdout=errlog, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(process, port, log)

        async def main() -> None:
            with anyio.fail_after(120):
                url = f"http://127.0.0.1:{port}/mcp"
                async with (
                    streamable_http_client(url) as (read, write),
                    ClientSession(read, write) as session,
                ):
                    await session.initialize()
                    mcp = Mcp(session)
                    assert await mcp.tool_names() == READ_TOOLS
                    listed = await mcp.call("list_repositories")
                    assert listed["repositories"] == [{"repository": repo_path}]

        anyio.run(main)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.sandbox
def test_a_shell_left_running_is_cancelled_when_the_client_leaves(
    server: LocalServer, repo_path: str, tmp_path: Path
) -> None:
    from tilde import Client
    from tilde.compute import Sandboxes

    started: dict[str, Any] = {}

    async def body(mcp: Mcp) -> None:
        started.update(await mcp.call("shell_start", repository=repo_path))
        await mcp.call("shell_run", sandbox_id=started["sandbox_id"], command="echo left > /sandbox/left.txt")

    run(server, tmp_path, body)
    org, name = repo_path.split("/")
    with Client(endpoint_url=server.endpoint_url, api_key=server.api_key) as client:
        status = Sandboxes(client, org, name).get(started["sandbox_id"]).wait(timeout=60)
        assert status.state == "cancelled", status
        assert list(client.repository(repo_path).commits.list()) == []


def test_binary_objects_are_resources_and_ranges_keep_characters_whole(
    server: LocalServer, repo_path: str, tmp_path: Path
) -> None:
    blob = bytes([0, 1, 2, 255, 254])

    async def body(mcp: Mcp) -> None:
        session_id = (await mcp.call("open_session", repository=repo_path))["session_id"]
        encoded = base64.b64encode(blob).decode()
        await mcp.call(
            "put_object", session_id=session_id, path="bin.dat", content=encoded, encoding="base64"
        )
        await mcp.call("put_object", session_id=session_id, path="u.txt", content="aÜb")
        commit_id = (await mcp.call("commit_session", session_id=session_id, message="bytes"))["commit_id"]

        refused = await mcp.error("read_object", repository=repo_path, path="bin.dat")
        assert f"tilde://{repo_path}/bin.dat" in refused
        resource = await mcp.session.read_resource(f"tilde://{repo_path}@{commit_id}/bin.dat")
        assert base64.b64decode(getattr(resource.contents[0], "blob", "")) == blob
        latest = await mcp.session.read_resource(f"tilde://{repo_path}/u.txt")
        assert getattr(latest.contents[0], "text", None) == "aÜb"

        # "Ü" is two bytes: a range ending inside it stops before it, and the next read starts there.
        cut = await mcp.call("read_object", repository=repo_path, path="u.txt", max_bytes=2)
        assert (cut["text"], cut["bytes"], cut["truncated"]) == ("a", 1, True)
        rest = await mcp.call("read_object", repository=repo_path, path="u.txt", offset=cut["bytes"])
        assert (rest["text"], rest["truncated"]) == ("Üb", False)
        past = await mcp.call("read_object", repository=repo_path, path="u.txt", offset=10)
        assert (past["text"], past["bytes"]) == ("", 0)

    run(server, tmp_path, body)
