"""A cluster of real ``tilde-server serve`` replicas on one PostgreSQL and one S3 bucket, behind a balancer.

`run_cluster` takes a fresh database of the session's PostgreSQL (`pg_server`) and a fresh bucket of the
session's SeaweedFS (`weed_s3`), starts N replicas as separate processes (each with its own data directory,
port, node id and log file; all with the same master key and admin key), puts the random-per-request load
balancer of `cluster_lb` in front of them, and yields a `ClusterServer`. Clients use ``endpoint_url`` (the
balancer) like any server's; tests that need one replica in particular use ``replica_url(i)``, ``kill(i)``
(SIGKILL, as if its machine died) and ``restart(i)``.

The first replica starts alone (it creates the schemas and the admin user), the others then start together. A
replica that does not come up fails the fixture with the tail of its log; on exit every replica gets SIGTERM
(then SIGKILL for whatever is left in its process group) and the balancer is stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pg_server import PostgresServer
from weed_s3 import S3Server, _free_ports

START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
#: Starts tried with fresh ports when a port picked as free for a replica or the balancer was taken meanwhile
#: (other test processes pick free ports too).
PORT_ATTEMPTS = 3
LB_SCRIPT = Path(__file__).with_name("cluster_lb.py")


def _serve_options() -> set[str]:
    """The option names ``tilde-server serve`` knows (the cluster flags are used only once they exist)."""
    from tilde.server.cli import serve

    names: set[str] = set()
    for param in serve.params:
        names.update(getattr(param, "opts", ()))
        names.update(getattr(param, "secondary_opts", ()))
    return names


class PortTaken(RuntimeError):
    """A port picked as free was taken by someone else before the replica or the balancer bound it."""


@dataclass
class Replica:
    """One ``tilde-server serve`` process of the cluster."""

    index: int
    node_id: str
    port: int
    data_dir: Path
    log: Path
    runs_sandboxes: bool
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: Where the current run's output starts in the log (the log is kept across restarts).
    log_start: int = 0

    @property
    def url(self) -> str:
        """The replica's own base URL (bypassing the load balancer)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server process id."""
        assert self.process is not None, f"replica {self.index} is not running"
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def current_log(self) -> str:
        """What the current run of the process has logged."""
        try:
            with self.log.open("rb") as log:
                log.seek(self.log_start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the replica's log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return text[-chars:]


class ClusterServer:
    """A running cluster: the load balancer's URL, the admin key, and the replicas (see the module docstring).

    It offers what the end-to-end suites use of a server fixture (``endpoint_url``, ``api_key``,
    ``create_api_key``), plus the replicas themselves.
    """

    def __init__(
        self,
        replicas: list[Replica],
        *,
        api_key: str,
        env: dict[str, str],
        command: list[str],
        database_url: str,
        blob_store: str,
        lb_port: int,
        node_flags: bool,
    ) -> None:
        self.replicas = replicas
        self.api_key = api_key
        self.database_url = database_url
        self.blob_store = blob_store
        self._env = env
        self._command = command
        self._lb_port = lb_port
        self._node_flags = node_flags
        self._lb: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """The load balancer's base URL: each request goes to a random live replica."""
        return f"http://127.0.0.1:{self._lb_port}"

    @property
    def data_dir(self) -> Path:
        """Replica 0's data directory, for ``tilde-server`` commands (``user create --data-dir``).

        It remembers the cluster's database URL, so commands on it work on the cluster's registry; the blobs
        are in the bucket and each replica keeps its sandboxes in its own directory.
        """
        return self.replicas[0].data_dir

    def replica_url(self, index: int) -> str:
        """Replica ``index``'s own base URL."""
        return self.replicas[index].url

    def kill(self, index: int) -> None:
        """SIGKILL replica ``index`` and everything it started (its sandboxes), as if its machine died."""
        replica = self.replicas[index]
        if replica.process is None:
            return
        if replica.process.poll() is None:
            os.killpg(replica.process.pid, signal.SIGKILL)
        replica.process.wait(timeout=STOP_TIMEOUT)

    def stop(self, index: int) -> None:
        """Stop replica ``index`` cleanly (SIGTERM, then SIGKILL after a grace period)."""
        replica = self.replicas[index]
        process = replica.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        # Whatever the server left behind in its process group (sandboxes it did not get to stop).
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=STOP_TIMEOUT)

    def restart(self, index: int) -> None:
        """Start replica ``index`` again (same node id, data directory and port) and wait until it serves."""
        replica = self.replicas[index]
        if replica.running:
            self.stop(index)
        self._spawn(replica)
        self._wait_healthy(replica)

    def create_api_key(self, principal_type: str, name: str, org: str | None = None) -> str:
        """Mint an API key in the shared registry, like ``LocalServer.create_api_key``.

        A user is created in the database (and made a member of ``org`` through the API, so every replica
        learns of the membership the way it learns of any other); agents and roles must exist already.
        """
        from tilde.server._db import database_location
        from tilde.server.local import mint_api_key
        from tilde.server.registry import Registry

        registry = Registry(database_location(self.replicas[0].data_dir, self.database_url, "registry"))
        try:
            token = mint_api_key(registry, principal_type, name, org, add_member=False)
        finally:
            registry.close()
        if principal_type == "user" and org is not None:
            response = httpx.post(
                f"{self.endpoint_url}/api/v1/organizations/{org}/members",
                json={"username": name},
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=60,
            )
            assert response.status_code in (201, 409), response.text
        return token

    def log_tails(self, chars: int = 3000) -> str:
        """The end of every replica's log, headed by its node id (for failure reports)."""
        return "\n".join(
            f"--- replica {r.index} ({r.node_id}, {'running' if r.running else 'stopped'}) {r.log} ---\n"
            + r.log_tail(chars)
            for r in self.replicas
        )

    def _spawn(self, replica: Replica) -> None:
        command = [*self._command, "--port", str(replica.port), "--data-dir", str(replica.data_dir)]
        # The address clients know the cluster by: every replica hands out URLs on it.
        command += ["--public-url", self.endpoint_url]
        if self._node_flags:
            command += ["--node-id", replica.node_id, "--node-url", replica.url]
            if not replica.runs_sandboxes:
                command.append("--no-sandboxes")
        with replica.log.open("ab") as out:
            out.write(f"\n==> {time.strftime('%H:%M:%S')} starting replica {replica.index}\n".encode())
            out.flush()
            replica.log_start = out.tell()
            replica.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=self._env, start_new_session=True
            )

    def _wait_healthy(self, replica: Replica) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert replica.process is not None
            if replica.process.poll() is not None:
                if "is already in use" in replica.current_log():
                    raise PortTaken(f"replica {replica.index}'s port {replica.port} was taken")
                raise RuntimeError(
                    f"replica {replica.index} exited with {replica.process.returncode}:\n{replica.log_tail()}"
                )
            # Its port is bound once it says where it serves: what answers there from then on is this process.
            if f"on {replica.url} " in replica.current_log():
                try:
                    if httpx.get(f"{replica.url}/healthz", timeout=5).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {replica.index} did not start in time:\n{replica.log_tail()}")
            time.sleep(0.1)

    def _start_balancer(self) -> None:
        command = [sys.executable, str(LB_SCRIPT), "--port", str(self._lb_port)]
        for replica in self.replicas:
            command += ["--backend", replica.url]
        log = self.replicas[0].log.with_name("balancer.log")
        self._lb_log = log
        with log.open("wb") as out:
            self._lb = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while "listening on" not in log.read_text(errors="replace"):
            if self._lb.poll() is not None and "Address already in use" in log.read_text(errors="replace"):
                raise PortTaken(f"the balancer's port {self._lb_port} was taken")
            if self._lb.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the load balancer did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)

    def _stop_balancer(self) -> None:
        if self._lb is not None and self._lb.poll() is None:
            self._lb.send_signal(signal.SIGTERM)
            try:
                self._lb.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._lb.kill()
                self._lb.wait(timeout=STOP_TIMEOUT)

    def start(self) -> None:
        """Start the balancer, the first replica, then the others together (new ports if one was taken)."""
        for attempt in range(PORT_ATTEMPTS):
            try:
                self._start_once()
                return
            except PortTaken:
                self.close()
                if attempt == PORT_ATTEMPTS - 1:
                    raise
                *ports, self._lb_port = _free_ports(len(self.replicas) + 1)
                for replica, port in zip(self.replicas, ports, strict=True):
                    replica.port = port

    def _start_once(self) -> None:
        self._start_balancer()
        first, *others = self.replicas
        self._spawn(first)
        self._wait_healthy(first)
        for replica in others:
            self._spawn(replica)
        with ThreadPoolExecutor(max_workers=max(1, len(others))) as pool:
            list(pool.map(self._wait_healthy, others))

    def close(self) -> None:
        """Stop every replica and the balancer."""
        try:
            with ThreadPoolExecutor(max_workers=len(self.replicas)) as pool:
                list(pool.map(self.stop, range(len(self.replicas))))
        finally:
            self._stop_balancer()


@contextmanager
def run_cluster(
    replicas: int = 3,
    *,
    postgres: PostgresServer,
    s3: S3Server,
    sandboxes: bool | Sequence[int] = True,
    root: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[ClusterServer]:
    """Run ``replicas`` tilde-server processes on a fresh database and bucket, behind a load balancer.

    Args:
        replicas: How many replicas.
        postgres: The PostgreSQL whose fresh database holds the cluster's metadata.
        s3: The S3 server whose fresh bucket holds the blobs.
        sandboxes: Which replicas run sandboxes: all (True), none (False) or these indexes.
        root: Where the data directories and logs go (a temporary directory, removed after, by default).
        env: Extra environment variables for the replicas.

    """
    from tilde.server.config import generate_user_key
    from tilde.server.crypto import MASTER_KEY_ENV, encode_key

    own_root = root is None
    base = Path(tempfile.mkdtemp(prefix="tilde-cluster-")) if root is None else root
    base.mkdir(parents=True, exist_ok=True)
    database_url = postgres.new_database()
    blob_store = f"s3://{s3.new_bucket({})}/tilde"
    *ports, lb_port = _free_ports(replicas + 1)
    run_id = uuid.uuid4().hex[:6]
    if sandboxes is True:
        sandbox_indexes = set(range(replicas))
    elif sandboxes is False:
        sandbox_indexes = set()
    else:
        sandbox_indexes = set(sandboxes)
    members = []
    for index, port in enumerate(ports):
        data_dir = base / f"replica-{index}"
        data_dir.mkdir()
        members.append(
            Replica(
                index=index,
                node_id=f"node-{run_id}-{index}",
                port=port,
                data_dir=data_dir,
                log=base / f"replica-{index}.log",
                runs_sandboxes=index in sandbox_indexes,
            )
        )
    api_key = generate_user_key()
    replica_env = {
        **os.environ,
        MASTER_KEY_ENV: encode_key(os.urandom(32)),
        "TILDE_SERVER_ADMIN_KEY": api_key,
        "TILDE_SERVER_DATABASE_URL": database_url,
        "AWS_ACCESS_KEY_ID": s3.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
        "AWS_DEFAULT_REGION": s3.region,
        # The log shows each line as it is written (the start-up line is awaited).
        "PYTHONUNBUFFERED": "1",
        # Only the credentials above: never the machine's own AWS files.
        "AWS_CONFIG_FILE": str(base / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(base / "no-aws-credentials"),
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "tilde.server",
        "serve",
        "--host",
        "127.0.0.1",
        # Behind a balancer every client has the balancer's address: no per-address cap.
        "--max-connections-per-address",
        "0",
        "--blob-store",
        blob_store,
        "--s3-endpoint-url",
        s3.endpoint_url,
    ]
    cluster = ClusterServer(
        members,
        api_key=api_key,
        env=replica_env,
        command=command,
        database_url=database_url,
        blob_store=blob_store,
        lb_port=lb_port,
        node_flags="--node-id" in _serve_options(),
    )
    try:
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.close()
        finally:
            if own_root:
                shutil.rmtree(base, ignore_errors=True)
