"""Shell.run / stream / spawn against a scripted websocket server (the REST calls are mocked)."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

import httpx
import pytest
import respx
from websockets.sync.server import ServerConnection

from tilde.compute import KILLED_EXIT_CODE, TIMEOUT_EXIT_CODE, Client, Shell
from tilde.compute import _exec as exec_module
from tilde.core import CommandError, GoneError, SandboxError, TransportError

if TYPE_CHECKING:
    from conftest import FakeExecServer

ORG, REPO_NAME = "acme", "data"
SANDBOX_ID = "5b1c7f0e-0000-4000-8000-000000000001"


def _shell(client: Client) -> Shell:
    shell = Shell(client, client.repository(f"{ORG}/{REPO_NAME}").sandboxes.get(SANDBOX_ID))
    shell._running = True  # these tests are about /exec; waiting for "running" is tested elsewhere
    return shell


def _exit(code: object, **extra: object) -> bytes:
    return b"\x05" + json.dumps({"exit_code": code, **extra}).encode()


def _recv_launch(connection: ServerConnection) -> dict[str, object]:
    message = connection.recv()
    assert isinstance(message, bytes)
    assert message[0] == 0
    launch: dict[str, object] = json.loads(message[1:])
    return launch


def test_run_keeps_stdout_and_stderr_apart_and_ignores_noise(
    exec_server: FakeExecServer, client: Client
) -> None:
    def script(connection: ServerConnection) -> None:
        assert _recv_launch(connection) == {"cmd": ["sh", "-c", "work"]}
        connection.send(b"\x03out-1 ")
        connection.send("a text message the client must ignore")
        connection.send(b"\x04err\r\n\x1b[0m")
        connection.send(b"\x09unknown frame type")
        connection.send(b"\x03out-2")
        connection.send(_exit(3))

    exec_server.script = script
    result = _shell(client).run("work")
    assert result.stdout.read() == b"out-1 out-2"
    assert result.stderr.read() == b"err\r\n\x1b[0m"
    assert result.exit_code == 3
    assert exec_server.paths == [
        f"/api/v1/organizations/{ORG}/repositories/{REPO_NAME}/sandboxes/{SANDBOX_ID}/exec"
    ]
    assert exec_server.headers[0]["Authorization"] == "Bearer tuk-test"


def test_run_sends_env_cwd_timeout_and_stdin_then_eof(exec_server: FakeExecServer, client: Client) -> None:
    received: list[bytes] = []

    def script(connection: ServerConnection) -> None:
        launch = _recv_launch(connection)
        assert launch == {"cmd": ["cat"], "env": {"K": "v"}, "cwd": "/sandbox/sub", "timeout": 30}
        while True:
            frame = connection.recv()
            assert isinstance(frame, bytes)
            received.append(frame)
            if frame[0] == 2:
                break
        connection.send(b"\x03" + b"".join(f[1:] for f in received if f[0] == 1))
        connection.send(_exit(0))

    exec_server.script = script
    result = _shell(client).run(["cat"], env={"K": "v"}, cwd="/sandbox/sub", stdin="données", timeout=30)
    assert result.stdout.text() == "données"
    assert received[-1] == b"\x02"


def test_bad_exit_payload_means_minus_one_and_check_raises(
    exec_server: FakeExecServer, client: Client
) -> None:
    def script(connection: ServerConnection) -> None:
        _recv_launch(connection)
        connection.send(b"\x03partial")
        connection.send(b"\x05not json")

    exec_server.script = script
    with pytest.raises(CommandError) as info:
        _shell(client).run(["false", "x"], check=True)
    assert info.value.command == "false x"
    assert info.value.result.exit_code == -1
    assert info.value.result.stdout == b"partial"
    assert str(info.value) == "Command 'false x' exited with code -1"


def test_live_callbacks_see_chunks_as_they_arrive(exec_server: FakeExecServer, client: Client) -> None:
    go_on = threading.Event()

    def script(connection: ServerConnection) -> None:
        _recv_launch(connection)
        connection.send(b"\x03first")
        assert go_on.wait(10), "the client did not see the first chunk while the command ran"
        connection.send(b"\x04second")
        connection.send(_exit(0))

    seen: list[tuple[str, bytes]] = []

    def on_stdout(chunk: bytes) -> None:
        seen.append(("out", chunk))
        go_on.set()

    exec_server.script = script
    result = _shell(client).run("x", on_stdout=on_stdout, on_stderr=lambda chunk: seen.append(("err", chunk)))
    assert seen == [("out", b"first"), ("err", b"second")]
    assert result.exit_code == 0


def test_close_without_exit_is_a_sandbox_error(exec_server: FakeExecServer, client: Client) -> None:
    def script(connection: ServerConnection) -> None:
        _recv_launch(connection)
        connection.send(b"\x03bye")

    exec_server.script = script
    with pytest.raises(SandboxError, match="closed before"):
        _shell(client).run("x")


def test_refused_handshake_maps_to_api_errors(exec_server: FakeExecServer, client: Client) -> None:
    exec_server.refuse_with = 410
    with pytest.raises(GoneError) as info:
        _shell(client).run("x")
    assert info.value.status_code == 410
    assert info.value.message == "sandbox finished"


def test_client_side_timeout_guard_when_the_server_ignores_timeout(
    exec_server: FakeExecServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exec_module, "TIMEOUT_GRACE_SECONDS", 0.0)

    def script(connection: ServerConnection) -> None:
        _recv_launch(connection)
        connection.send(b"\x03started")
        for _ in connection:  # until the client gives up and closes
            pass

    exec_server.script = script
    result = _shell(client).run("sleep 100", timeout=0.3)
    assert result.exit_code == TIMEOUT_EXIT_CODE
    assert result.stdout == b"started"
    assert exec_server.closed.wait(10)


def test_stream_yields_named_chunks_in_order(exec_server: FakeExecServer, client: Client) -> None:
    def script(connection: ServerConnection) -> None:
        _recv_launch(connection)
        connection.send(b"\x03a")
        connection.send(b"\x04b")
        connection.send(b"\x03c")
        connection.send(_exit(124, reason="timeout"))

    exec_server.script = script
    with _shell(client).stream("x") as output:
        assert output.exit_code is None
        chunks = list(output)
    assert chunks == [("stdout", b"a"), ("stderr", b"b"), ("stdout", b"c")]
    assert output.exit_code == 124
    assert output.reason == "timeout"


def test_spawn_runs_in_the_background_and_kill_drops_the_connection(
    exec_server: FakeExecServer, client: Client
) -> None:
    def script(connection: ServerConnection) -> None:
        _recv_launch(connection)
        connection.send(b"\x03ready\n")
        for message in connection:
            assert isinstance(message, bytes)
            if message[0] == 1:
                connection.send(b"\x03echo:" + message[1:])

    exec_server.script = script
    shell = _shell(client)
    lines: list[bytes] = []
    got_echo = threading.Event()

    def on_stdout(chunk: bytes) -> None:
        lines.append(chunk)
        if chunk.startswith(b"echo:"):
            got_echo.set()

    process = shell.spawn("server", stdin_open=True, on_stdout=on_stdout)
    assert process.poll() is None
    with pytest.raises(TimeoutError):
        process.wait(timeout=0.05)
    process.write(b"ping")
    assert got_echo.wait(10)
    assert process.stdout == b"ready\necho:ping"
    process.kill()
    assert process.poll() == KILLED_EXIT_CODE
    result = process.wait()
    assert result.exit_code == KILLED_EXIT_CODE
    assert result.stdout == b"ready\necho:ping"
    assert exec_server.closed.wait(10)
    assert "exit_code=-9" in repr(process)


def test_spawn_wait_returns_the_exit_status(exec_server: FakeExecServer, client: Client) -> None:
    def script(connection: ServerConnection) -> None:
        _recv_launch(connection)
        connection.send(b"\x04warn")
        connection.send(_exit(0))

    exec_server.script = script
    process = _shell(client).spawn(["job"])
    result = process.wait(timeout=10)
    assert (result.exit_code, result.stderr.read(), result.stdout.read()) == (0, b"warn", b"")


def test_shell_exit_kills_background_processes_then_finishes(
    exec_server: FakeExecServer, client: Client
) -> None:
    def script(connection: ServerConnection) -> None:
        _recv_launch(connection)
        for _ in connection:
            pass

    exec_server.script = script
    shell = _shell(client)
    with respx.mock() as router:
        finish = router.post(f"{exec_server.endpoint}/api/v1{shell.sandbox._path}/finish").mock(
            return_value=httpx.Response(202, json={"message": "finishing"})
        )

        def status(request: httpx.Request) -> httpx.Response:
            # Running until finished; then the commit the clean exit waits for.
            if not finish.called:
                return httpx.Response(200, json={"status": "running", "status_reason": ""})
            final = {"status": "done", "status_reason": "committed", "commit_id": "c1"}
            return httpx.Response(200, json=final)

        router.get(f"{exec_server.endpoint}/api/v1{shell.sandbox._path}/status").mock(side_effect=status)
        with shell:
            process = shell.spawn("forever")
    assert process.poll() == KILLED_EXIT_CODE
    assert finish.call_count == 1
    assert shell.commit_id == "c1"


def test_unreachable_server_is_a_transport_error() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        Client(endpoint_url=f"http://127.0.0.1:{port}", api_key="tuk-test") as client,
        pytest.raises(TransportError),
    ):
        _shell(client).run("x")
