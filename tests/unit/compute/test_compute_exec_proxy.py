"""A client finds its ``/exec`` websockets' proxy in the environment once, and still uses it."""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any

import pytest
import websockets.proxy
from websockets.sync.server import ServerConnection

from tilde.compute import Client, Shell
from tilde.core import TransportError

if TYPE_CHECKING:
    from conftest import FakeExecServer

ORG, REPO_NAME = "acme", "data"
SANDBOX_ID = "5b1c7f0e-0000-4000-8000-000000000001"


def _shell(client: Client) -> Shell:
    shell = Shell(client, client.repository(f"{ORG}/{REPO_NAME}").sandboxes.get(SANDBOX_ID))
    shell._running = True  # these tests are about /exec; waiting for "running" is tested elsewhere
    return shell


def _exit_at_once(connection: ServerConnection) -> None:
    connection.recv()
    connection.send(b'\x05{"exit_code": 0}')


def test_the_environment_is_read_once_per_client(
    exec_server: FakeExecServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[Any] = []
    real = websockets.proxy.get_proxy

    def counting(uri: Any) -> str | None:
        lookups.append(uri)
        return real(uri)

    monkeypatch.setattr(websockets.proxy, "get_proxy", counting)
    exec_server.script = _exit_at_once
    shell = _shell(client)
    for _ in range(3):
        assert shell.run("true").exit_code == 0
    assert len(lookups) == 1
    assert len(exec_server.paths) == 3


def test_a_proxy_in_the_environment_is_still_used(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(1)
        proxy.settimeout(30)

        def answer() -> None:
            connection, _ = proxy.accept()
            with connection:
                seen.append(connection.recv(4096))  # the CONNECT request; closing refuses it

        listener = threading.Thread(target=answer)
        listener.start()
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        with (
            Client(endpoint_url="http://127.0.0.1:1", api_key="tuk-test", max_retries=0) as client,
            pytest.raises(TransportError),
        ):
            _shell(client).run("true")
        listener.join(timeout=30)
    assert seen
    assert seen[0].startswith(b"CONNECT 127.0.0.1:1 ")
