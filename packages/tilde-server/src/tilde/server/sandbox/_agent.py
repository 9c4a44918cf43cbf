"""The in-sandbox agent: the one long-lived process bubblewrap starts inside every sandbox.

It is run by a bare interpreter (``python -I -S``) inside the sandbox, so it uses the standard library only
and plain threads (importing asyncio would cost more start-up time than the whole exec round trip is allowed).

What it does:

- listens on a unix socket bind-mounted from the host (``control``); each connection is one exec: a LAUNCH
  frame, then STDIN / STDIN_CLOSE / KILL frames from the host, and STDOUT / STDERR frames followed by one EXIT
  frame back; a SHUTDOWN frame on a fresh connection stops the sandbox gracefully;
- relays TCP connections to ``127.0.0.1:<port>`` inside the sandbox's network namespace to unix sockets served
  by the host (the Tilde API and the credentials endpoint), so code without network access can still reach
  them;
- in one-shot mode runs the main command with stdout and stderr both on the inherited log file (so they merge
  in production order) and exits with its exit code;
- reports ``ready`` and ``exit <code>`` lines on an inherited status pipe.

Frames on the control socket: 1 byte type, 4 bytes big-endian payload length, payload.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from typing import Any

FRAME_LAUNCH = 0x00
FRAME_STDIN = 0x01
FRAME_STDIN_CLOSE = 0x02
FRAME_STDOUT = 0x03
FRAME_STDERR = 0x04
FRAME_EXIT = 0x05
FRAME_KILL = 0x10
FRAME_SHUTDOWN = 0x11

HEADER = struct.Struct(">BI")
READ_CHUNK = 64 * 1024
#: How long output pipes may stay open after the command exited (a background child can hold them forever).
DRAIN_GRACE = 0.5
#: Grace between SIGTERM and SIGKILL when the sandbox shuts down.
TERM_GRACE = 1.0


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = []
    while size:
        try:
            chunk = sock.recv(size)
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    """Read one frame; None at end of stream."""
    header = _recv_exact(sock, HEADER.size)
    if header is None:
        return None
    kind, length = HEADER.unpack(header)
    payload = _recv_exact(sock, length) if length else b""
    if payload is None:
        return None
    return kind, payload


def _exit_code(returncode: int) -> int:
    # Shell convention: killed by signal N -> 128 + N.
    return 128 - returncode if returncode < 0 else returncode


def _kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except OSError:
        pass


class Agent:
    """The agent's state: base environment, running execs, and the status pipe."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.env: dict[str, str] = dict(config.get("env") or {})
        if config.get("secrets_fd") is not None:
            # Injected secrets come through a memory file, never through the config file on disk.
            with os.fdopen(int(config["secrets_fd"]), "rb") as secrets:
                self.env.update(json.load(secrets))
        self.cwd: str = config.get("cwd") or "/"
        self.status_fd: int = int(config["status_fd"])
        self.procs: set[subprocess.Popen[bytes]] = set()
        self.lock = threading.Lock()
        self.shutdown = threading.Event()

    def report(self, line: str) -> None:
        """Write one line to the host's status pipe."""
        try:
            os.write(self.status_fd, (line + "\n").encode())
        except OSError:
            pass

    # -- relays --------------------------------------------------------------------------------------------

    def start_relay(self, unix_path: str) -> int:
        """Listen on a loopback TCP port and forward every connection to ``unix_path``; returns the port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        threading.Thread(target=self._relay_accept, args=(listener, unix_path), daemon=True).start()
        return int(listener.getsockname()[1])

    def _relay_accept(self, listener: socket.socket, unix_path: str) -> None:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=self._relay_one, args=(client, unix_path), daemon=True).start()

    @staticmethod
    def _relay_one(client: socket.socket, unix_path: str) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(unix_path)
        except OSError:
            client.close()
            upstream.close()
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def pump(source: socket.socket, dest: socket.socket) -> None:
            try:
                while True:
                    data = source.recv(READ_CHUNK)
                    if not data:
                        break
                    dest.sendall(data)
            except OSError:
                pass
            try:
                dest.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    # -- execs ---------------------------------------------------------------------------------------------

    def serve_control(self, listener: socket.socket) -> None:
        """Accept exec connections until the process exits."""
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            frame = read_frame(conn)
            if frame is None:
                return
            kind, payload = frame
            if kind == FRAME_SHUTDOWN:
                self.shutdown.set()
                return
            if kind != FRAME_LAUNCH:
                self._send_exit(
                    conn, threading.Lock(), {"exit_code": -1, "error": "first frame must be LAUNCH"}
                )
                return
            self._exec(conn, json.loads(payload.decode("utf-8")))
        except Exception as error:  # the agent must never die because of one exec
            try:
                self._send_exit(conn, threading.Lock(), {"exit_code": -1, "error": f"agent error: {error}"})
            except Exception:
                pass
        finally:
            conn.close()

    @staticmethod
    def _send(conn: socket.socket, lock: threading.Lock, kind: int, payload: bytes) -> bool:
        with lock:
            try:
                conn.sendall(HEADER.pack(kind, len(payload)) + payload)
                return True
            except OSError:
                return False

    def _send_exit(self, conn: socket.socket, lock: threading.Lock, body: dict[str, Any]) -> None:
        self._send(conn, lock, FRAME_EXIT, json.dumps(body).encode())

    def _exec(self, conn: socket.socket, launch: dict[str, Any]) -> None:
        lock = threading.Lock()
        cmd = launch.get("cmd")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(part, str) for part in cmd):
            self._send_exit(conn, lock, {"exit_code": -1, "error": "cmd must be a non-empty list of strings"})
            return
        env = dict(self.env)
        env.update({str(k): str(v) for k, v in (launch.get("env") or {}).items()})
        cwd = launch.get("cwd") or self.cwd
        timeout = launch.get("timeout")
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,
                bufsize=0,
            )
        except OSError as error:
            code = 126 if isinstance(error, PermissionError) else 127
            message = f"{cmd[0]}: {error.strerror or error}"
            self._send(conn, lock, FRAME_STDERR, (message + "\n").encode())
            self._send_exit(conn, lock, {"exit_code": code, "error": message})
            return
        with self.lock:
            self.procs.add(proc)
        finished = threading.Event()
        sent_exit = [False]

        def pump(stream: Any, kind: int) -> None:
            while True:
                try:
                    data = os.read(stream.fileno(), READ_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                with lock:
                    if sent_exit[0]:
                        break
                    try:
                        conn.sendall(HEADER.pack(kind, len(data)) + data)
                    except OSError:
                        break
            stream.close()

        def control() -> None:
            stdin = proc.stdin
            while True:
                frame = read_frame(conn)
                if frame is None:
                    # The host hung up (client gone or sandbox ending): stop the command.
                    if not finished.is_set():
                        _kill_group(proc)
                    break
                kind, payload = frame
                if kind == FRAME_STDIN and stdin is not None and payload:
                    try:
                        stdin.write(payload)
                    except OSError:
                        pass
                elif kind == FRAME_STDIN_CLOSE and stdin is not None:
                    try:
                        stdin.close()
                    except OSError:
                        pass
                    stdin = None
                elif kind == FRAME_KILL:
                    _kill_group(proc)

        pumps = [
            threading.Thread(target=pump, args=(proc.stdout, FRAME_STDOUT), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, FRAME_STDERR), daemon=True),
        ]
        for thread in pumps:
            thread.start()
        threading.Thread(target=control, daemon=True).start()
        body: dict[str, Any] = {}
        try:
            returncode = proc.wait(timeout=float(timeout) if timeout else None)
            body["exit_code"] = _exit_code(returncode)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            body = {"exit_code": 124, "reason": "timeout"}
        finished.set()
        for thread in pumps:
            thread.join(DRAIN_GRACE)
        payload = json.dumps(body).encode()
        with lock:
            # Output still arriving from a lingering background child is dropped: EXIT must be the last frame.
            sent_exit[0] = True
            try:
                conn.sendall(HEADER.pack(FRAME_EXIT, len(payload)) + payload)
            except OSError:
                pass
        with self.lock:
            self.procs.discard(proc)
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def stop_all(self) -> None:
        """Terminate every running exec (SIGTERM, then SIGKILL after a grace period)."""
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            _kill_group(proc, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(TERM_GRACE)
            except subprocess.TimeoutExpired:
                _kill_group(proc)


def main(argv: list[str]) -> int:
    """Run the agent with the JSON configuration file named by ``argv[1]``."""
    with open(argv[1], encoding="utf-8") as handle:
        config = json.load(handle)
    # Small stacks for the agent's threads (relays, execs): 8 MiB each would eat into RLIMIT_AS, which stands
    # in for the memory limit where there is no memory cgroup.
    threading.stack_size(2 * 1024 * 1024)
    for name, value in (config.get("rlimits") or {}).items():
        # Soft and hard alike, so code in the sandbox cannot raise them again.
        import resource

        kind = getattr(resource, name)
        hard = resource.getrlimit(kind)[1]
        value = int(value) if hard == resource.RLIM_INFINITY else min(int(value), hard)
        resource.setrlimit(kind, (value, value))
    agent = Agent(config)
    if config.get("api_socket"):
        port = agent.start_relay(config["api_socket"])
        agent.env.setdefault("TILDE_API_URL", f"http://127.0.0.1:{port}")
    if config.get("credentials_socket"):
        port = agent.start_relay(config["credentials_socket"])
        agent.env.setdefault("TILDE_SANDBOX_CREDENTIALS_URI", f"http://127.0.0.1:{port}/v1/credentials")
    if config.get("proxy_socket"):
        proxy = f"http://127.0.0.1:{agent.start_relay(config['proxy_socket'])}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            agent.env.setdefault(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            # The API and credentials relays listen on 127.0.0.1 and must be reached directly.
            agent.env.setdefault(name, "127.0.0.1,::1")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(config["control"])
    listener.listen(64)
    threading.Thread(target=agent.serve_control, args=(listener,), daemon=True).start()
    command = config.get("command")
    agent.report("ready")
    if config.get("mode") == "one-shot" and command:
        try:
            main_proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, env=agent.env, cwd=agent.cwd, start_new_session=True
            )
        except OSError as error:
            code = 126 if isinstance(error, PermissionError) else 127
            sys.stderr.write(f"{command[0]}: {error.strerror or error}\n")
            sys.stderr.flush()
            agent.report(f"exit {code}")
            return code
        code = _exit_code(main_proc.wait())
        agent.stop_all()
        agent.report(f"exit {code}")
        return code
    agent.shutdown.wait()
    agent.stop_all()
    agent.report("exit 0")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
