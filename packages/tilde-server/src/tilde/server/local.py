"""`LocalServer`: a real tilde-server (uvicorn + httptools) in a background thread."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from tilde.server._tuning import tune_malloc
from tilde.server.app import create_app
from tilde.server.auth import new_token
from tilde.server.config import ServerConfig, load_or_create_admin_key
from tilde.server.connection_guard import make_server
from tilde.server.registry import Registry

START_TIMEOUT = 30.0


class LocalServer:
    """Serve the Tilde API on a loopback port from a background thread.

    Use it as a context manager (or call `start` / `stop`)::

        with LocalServer() as server:
            client = tilde.Client(endpoint_url=server.endpoint_url, api_key=server.api_key)

    Args:
        data_dir: Where data lives; None uses a temporary directory removed on `stop`.
        port: TCP port; 0 picks a free one.
        host: Interface (loopback unless told otherwise).
        admin_key: The admin's API key; None reads the stored one or generates it.
        config: Extra settings, copied (not changed): ``host`` and ``port`` always come from the arguments
            above, ``data_dir`` and ``admin_key`` when those are given.

    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        admin_key: str | None = None,
        *,
        config: ServerConfig | None = None,
    ) -> None:
        self._temp_dir: Path | None = None
        if data_dir is None and config is None:
            self._temp_dir = data_dir = Path(tempfile.mkdtemp(prefix="tilde-server-"))
        base = config or ServerConfig(data_dir=Path(data_dir or "."))
        self.config = replace(
            base,
            host=host,
            port=port,
            data_dir=Path(data_dir) if data_dir is not None else base.data_dir,
            admin_key=admin_key if admin_key is not None else base.admin_key,
        )
        self._requested_port = self.config.port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._app: Starlette | None = None

    @property
    def data_dir(self) -> Path:
        """Return the data directory."""
        return self.config.data_dir

    @property
    def api_key(self) -> str:
        """Return the admin API key (``tuk-…``)."""
        assert self.config.admin_key is not None, "start() the server first"
        return self.config.admin_key

    @property
    def app(self) -> Starlette:
        """Return the Starlette application (available once started)."""
        if self._app is None:
            raise RuntimeError("the server is not started")
        return self._app

    @property
    def port(self) -> int:
        """Return the bound TCP port (available once started)."""
        if self._socket is None:
            raise RuntimeError("the server is not started")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def endpoint_url(self) -> str:
        """Return the base URL clients use, e.g. ``http://127.0.0.1:40123``."""
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> LocalServer:
        """Bind the port, start serving, and wait until requests are accepted."""
        if self._thread is not None:
            return self
        tune_malloc()
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config.admin_key is None:
            self.config.admin_key = load_or_create_admin_key(self.config.data_dir)[0]
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        # Naming IPPROTO_TCP matters: asyncio only turns Nagle off (TCP_NODELAY) on sockets whose proto says
        # TCP, and with Nagle on every request on a reused connection waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self._requested_port))
        sock.set_inheritable(True)
        self._socket = sock
        # The bound port (not 0) is what the absolute URLs the server hands out must name.
        self.config.port = self.port
        self._app = create_app(self.config)
        self._server = make_server(
            self._app, self.config, lifespan="on", log_level="warning", access_log=False
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="tilde-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                self.stop()
                raise RuntimeError("tilde-server failed to start (see the log)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("tilde-server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving, close the stores, and remove a temporary data directory."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def create_api_key(self, principal_type: str, name: str, org: str | None = None) -> str:
        """Mint an API key directly in the registry (prefer the HTTP endpoints; this is for tests and demos).

        Args:
            principal_type: ``"user"`` (``name`` is the user name, created if needed; with ``org`` it is
                also made a member), ``"agent"`` or ``"role"`` (``name`` in organization ``org``).
            name: The principal's name.
            org: Organization name (required for agents and roles).

        Returns:
            The clear token.

        """
        registry: Registry = self.app.state.registry
        return mint_api_key(registry, principal_type, name, org)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def mint_api_key(
    registry: Registry, principal_type: str, name: str, org: str | None = None, *, add_member: bool = True
) -> str:
    """Mint an API key directly in ``registry`` (what `LocalServer.create_api_key` does).

    Args:
        registry: The server's registry.
        principal_type: ``"user"`` (``name`` is the user name, created if needed), ``"agent"`` or ``"role"``
            (``name`` in organization ``org``).
        name: The principal's name.
        org: Organization name (required for agents and roles).
        add_member: With ``org``, make a user a member of it.

    Returns:
        The clear token.

    """
    token = new_token(principal_type)
    if principal_type == "user":
        user = registry.ensure_user(name)
        if org is not None and add_member:
            registry.add_member(registry.get_org(org).id, user.id)
        registry.create_key("user", user.id, token, name=name)
        return token
    if org is None:
        raise ValueError("agents and roles belong to an organization: pass org=")
    org_id = registry.get_org(org).id
    if principal_type == "agent":
        principal_id = registry.get_agent(org_id, name).id
    elif principal_type == "role":
        principal_id = registry.get_role(org_id, name).id
    else:
        raise ValueError(f"unknown principal type {principal_type!r}")
    registry.create_key(principal_type, principal_id, token, name=name)
    return token
