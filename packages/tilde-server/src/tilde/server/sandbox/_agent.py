"""The in-sandbox agent: the one long-lived process bubblewrap starts inside every sandbox.

It is run by a bare interpreter (``python -I -S``) inside the sandbox and starts on the critical path of every
sandbox, so it imports only modules built into the interpreter (``os``, ``sys``, ``_socket``, ``_thread``,
``_json``, ``_signal``): ``subprocess``, ``socket``, ``threading`` and ``json`` would pull in ``re``,
``enum``, ``selectors`` and ``collections`` and more than double the interpreter's start-up time. Commands
are started with ``posix_spawn`` (vfork and exec), their output is pumped by plain threads.

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

import _signal  # type: ignore[import-not-found,unused-ignore]
import _socket
import _thread
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # ``typing`` imports ``re``: for type checkers only
    from typing import Any

try:  # the C halves of the json module: the pure-Python parts import ``re``
    from _json import encode_basestring_ascii, make_scanner
except ImportError:  # pragma: no cover - every CPython build has them
    make_scanner = None  # type: ignore[assignment,misc,unused-ignore]
    encode_basestring_ascii = None  # type: ignore[assignment,unused-ignore]


FRAME_LAUNCH = 0x00
FRAME_STDIN = 0x01
FRAME_STDIN_CLOSE = 0x02
FRAME_STDOUT = 0x03
FRAME_STDERR = 0x04
FRAME_EXIT = 0x05
FRAME_KILL = 0x10
FRAME_SHUTDOWN = 0x11

#: Frame header: 1 byte type, 4 bytes big-endian payload length.
HEADER_SIZE = 5
READ_CHUNK = 64 * 1024
#: How long output pipes may stay open after the command exited (a background child can hold them forever).
DRAIN_GRACE = 0.5
#: Grace between SIGTERM and SIGKILL when the sandbox shuts down.
TERM_GRACE = 1.0

SIGKILL: int = _signal.SIGKILL
SIGTERM: int = _signal.SIGTERM
#: Ignored by the interpreter, so reset to their defaults in every command (as ``subprocess`` does).
_RESET_SIGNALS: tuple[int, ...] = tuple(
    getattr(_signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(_signal, name)
)


class _Context:
    """What ``_json.make_scanner`` reads from a decoder: plain JSON, nothing hooked."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__
    memo: dict[str, str] = {}


_SCAN = make_scanner(_Context()) if make_scanner is not None else None  # type: ignore[arg-type]
_SPACE = " \t\n\r"


def json_loads(text: str | bytes) -> Any:
    """Parse one JSON document (raises ValueError when it is not one)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _SCAN is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _SCAN(text, start)
    except StopIteration:
        raise ValueError("not a JSON document") from None
    if text[end:].strip(_SPACE):
        raise ValueError("extra data after the JSON document")
    return value


def json_dumps(value: Any) -> str:
    """Serialise the agent's own reports: dicts, lists, strings, numbers, booleans and None."""
    if isinstance(value, str):
        if encode_basestring_ascii is None:  # pragma: no cover
            import json

            return json.dumps(value)
        result: str = encode_basestring_ascii(value)
        return result
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json_dumps(str(k))}: {json_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(json_dumps(v) for v in value) + "]"
    return json_dumps(str(value))


def encode_header(kind: int, length: int) -> bytes:
    """Return the 5-byte header of a frame."""
    return bytes((kind,)) + length.to_bytes(4, "big")


def _recv_exact(sock: _socket.socket, size: int) -> bytes | None:
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


def read_frame(sock: _socket.socket) -> tuple[int, bytes] | None:
    """Read one frame; None at end of stream."""
    header = _recv_exact(sock, HEADER_SIZE)
    if header is None:
        return None
    kind, length = header[0], int.from_bytes(header[1:], "big")
    payload = _recv_exact(sock, length) if length else b""
    if payload is None:
        return None
    return kind, payload


def _exit_code(status: int) -> int:
    # Shell convention: killed by signal N -> 128 + N.
    returncode = os.waitstatus_to_exitcode(status)
    return 128 - returncode if returncode < 0 else returncode


def _kill_group(pid: int, sig: int = SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class _Done:
    """A one-shot flag that threads can wait on with a timeout (``threading.Event`` without ``threading``)."""

    def __init__(self) -> None:
        # Held until `set`; a waiter takes it and hands it straight back, so the flag itself is kept apart
        # (the lock flickers while waiters pass through it).
        self._flag = False
        self._lock = _thread.allocate_lock()
        self._lock.acquire()

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        try:
            self._lock.release()
        except RuntimeError:  # pragma: no cover - a second, concurrent `set`
            pass

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            self._lock.release()
            return True
        return self._flag


def _start(target: Any, *args: Any) -> _Done:
    """Run ``target(*args)`` in a new thread; the returned flag is set when it returns."""
    done = _Done()

    def run() -> None:
        try:
            target(*args)
        finally:
            done.set()

    _thread.start_new_thread(run, ())
    return done


class Child:
    """A command started by the agent, in a session (and process group) of its own."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.exited = _Done()
        self.status = 0
        #: Set when the exec's ``timeout`` stopped it.
        self.timed_out = False

    def wait(self) -> int:
        """Reap the command (blocking) and return its exit code (128 + N when killed by signal N)."""
        while True:
            try:
                _, status = os.waitpid(self.pid, 0)
                break
            except ChildProcessError:
                status = 0
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries already
                continue
        self.status = status
        self.exited.set()
        return _exit_code(status)


#: ``os.chdir`` + ``posix_spawn`` must not interleave between threads (posix_spawn has no working directory).
_spawn_lock = _thread.allocate_lock()


def spawn(argv: list[str], env: dict[str, str], cwd: str, stdio: tuple[int, int, int]) -> Child:
    """Start ``argv`` (looked up on ``env``'s ``PATH``) in ``cwd`` with ``stdio`` as its fds 0, 1 and 2.

    Raises:
        OSError: The working directory or the executable could not be used (as ``execvpe`` reports it).

    """
    actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
    if "/" in argv[0]:
        candidates = [argv[0]]
    else:
        path = env.get("PATH", os.defpath)
        candidates = [os.path.join(directory or ".", argv[0]) for directory in path.split(os.pathsep)]
    with _spawn_lock:
        os.chdir(cwd)
        try:
            error: OSError | None = None
            for candidate in candidates:
                try:
                    pid = os.posix_spawn(
                        candidate,
                        argv,
                        env,
                        file_actions=actions,
                        setsid=True,
                        setsigdef=_RESET_SIGNALS,
                    )
                    return Child(pid)
                except (FileNotFoundError, NotADirectoryError) as missing:
                    error = error if isinstance(error, PermissionError) else missing
                except PermissionError as denied:
                    error = denied
            assert error is not None
            raise error
        finally:
            os.chdir("/")


def _spawn_failure(error: OSError, name: str) -> tuple[int, str]:
    code = 126 if isinstance(error, PermissionError) else 127
    return code, f"{name}: {error.strerror or error}"


def _accept(listener: _socket.socket) -> _socket.socket:
    fd, _ = listener._accept()  # type: ignore[attr-defined]
    return _socket.socket(fileno=fd)


class Agent:
    """The agent's state: base environment, running execs, and the status pipe."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.env: dict[str, str] = dict(config.get("env") or {})
        if config.get("secrets_fd") is not None:
            # Injected secrets come through a memory file, never through the config file on disk.
            fd = int(config["secrets_fd"])
            chunks = []
            while True:
                chunk = os.read(fd, READ_CHUNK)
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(fd)
            self.env.update(json_loads(b"".join(chunks) or b"{}"))
        self.cwd: str = config.get("cwd") or "/"
        self.status_fd: int = int(config["status_fd"])
        self.children: set[Child] = set()
        self.lock = _thread.allocate_lock()
        self.shutdown = _Done()

    def report(self, line: str) -> None:
        """Write one line to the host's status pipe."""
        try:
            os.write(self.status_fd, (line + "\n").encode())
        except OSError:
            pass

    # -- relays --------------------------------------------------------------------------------------------

    def start_relay(self, unix_path: str) -> int:
        """Listen on a loopback TCP port and forward every connection to ``unix_path``; returns the port."""
        listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        _thread.start_new_thread(self._relay_accept, (listener, unix_path))
        return int(listener.getsockname()[1])

    def _relay_accept(self, listener: _socket.socket, unix_path: str) -> None:
        while True:
            client = _accept(listener)
            _thread.start_new_thread(self._relay_one, (client, unix_path))

    @staticmethod
    def _relay_one(client: _socket.socket, unix_path: str) -> None:
        upstream = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            upstream.connect(unix_path)
        except OSError:
            client.close()
            upstream.close()
            return
        client.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)

        def pump(source: _socket.socket, dest: _socket.socket) -> None:
            try:
                while True:
                    data = source.recv(READ_CHUNK)
                    if not data:
                        break
                    dest.sendall(data)
            except OSError:
                pass
            try:
                dest.shutdown(_socket.SHUT_WR)
            except OSError:
                pass

        back = _start(pump, upstream, client)
        pump(client, upstream)
        back.wait()
        client.close()
        upstream.close()

    # -- execs ---------------------------------------------------------------------------------------------

    def serve_control(self, listener: _socket.socket) -> None:
        """Accept exec connections until the process exits."""
        while True:
            conn = _accept(listener)
            _thread.start_new_thread(self._handle, (conn,))

    def _handle(self, conn: _socket.socket) -> None:
        lock = _thread.allocate_lock()
        try:
            frame = read_frame(conn)
            if frame is None:
                return
            kind, payload = frame
            if kind == FRAME_SHUTDOWN:
                self.shutdown.set()
                return
            if kind != FRAME_LAUNCH:
                self._send_exit(conn, lock, {"exit_code": -1, "error": "first frame must be LAUNCH"})
                return
            self._exec(conn, lock, json_loads(payload))
        except Exception as error:  # the agent must never die because of one exec
            try:
                self._send_exit(conn, lock, {"exit_code": -1, "error": f"agent error: {error}"})
            except Exception:
                pass
        finally:
            conn.close()

    @staticmethod
    def _send(conn: _socket.socket, lock: Any, kind: int, payload: bytes) -> bool:
        with lock:
            try:
                conn.sendall(encode_header(kind, len(payload)) + payload)
                return True
            except OSError:
                return False

    def _send_exit(self, conn: _socket.socket, lock: Any, body: dict[str, Any]) -> None:
        self._send(conn, lock, FRAME_EXIT, json_dumps(body).encode())

    def _exec(self, conn: _socket.socket, lock: Any, launch: Any) -> None:
        cmd = launch.get("cmd") if isinstance(launch, dict) else None
        if not isinstance(cmd, list) or not cmd or not all(isinstance(part, str) for part in cmd):
            self._send_exit(conn, lock, {"exit_code": -1, "error": "cmd must be a non-empty list of strings"})
            return
        env = dict(self.env)
        env.update({str(k): str(v) for k, v in (launch.get("env") or {}).items()})
        cwd = launch.get("cwd") or self.cwd
        timeout = launch.get("timeout")
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        try:
            child = spawn(cmd, env, str(cwd), (stdin_r, stdout_w, stderr_w))
        except (OSError, ValueError) as error:
            for fd in (stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w):
                _close(fd)
            code, message = _spawn_failure(
                error if isinstance(error, OSError) else OSError(str(error)), cmd[0]
            )
            self._send(conn, lock, FRAME_STDERR, (message + "\n").encode())
            self._send_exit(conn, lock, {"exit_code": code, "error": message})
            return
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
        with self.lock:
            self.children.add(child)
        sent_exit = [False]
        stdin_open = [stdin_w]

        def close_stdin() -> None:
            with lock:
                fd, stdin_open[0] = stdin_open[0], -1
            if fd >= 0:
                _close(fd)

        def pump(fd: int, kind: int) -> None:
            while True:
                try:
                    data = os.read(fd, READ_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                with lock:
                    if sent_exit[0]:
                        break
                    try:
                        conn.sendall(encode_header(kind, len(data)) + data)
                    except OSError:
                        break
            _close(fd)

        def control() -> None:
            while True:
                frame = read_frame(conn)
                if frame is None:
                    # The host hung up (client gone or sandbox ending): stop the command.
                    if not child.exited.is_set():
                        _kill_group(child.pid)
                    break
                kind, payload = frame
                if kind == FRAME_STDIN and payload:
                    fd = stdin_open[0]
                    view = memoryview(payload)
                    try:
                        while view and fd >= 0:
                            view = view[os.write(fd, view) :]
                    except OSError:
                        pass
                elif kind == FRAME_STDIN_CLOSE:
                    close_stdin()
                elif kind == FRAME_KILL and not child.exited.is_set():
                    _kill_group(child.pid)  # never once reaped: its pid may belong to another process by now

        pumps = [_start(pump, stdout_r, FRAME_STDOUT), _start(pump, stderr_r, FRAME_STDERR)]
        _start(control)
        if timeout:
            _start(self._watchdog, child, float(timeout))
        code = child.wait()
        body: dict[str, Any] = (
            {"exit_code": 124, "reason": "timeout"} if child.timed_out else {"exit_code": code}
        )
        for done in pumps:
            done.wait(DRAIN_GRACE)
        with lock:
            # Output still arriving from a lingering background child is dropped: EXIT must be the last frame.
            sent_exit[0] = True
            payload = json_dumps(body).encode()
            try:
                conn.sendall(encode_header(FRAME_EXIT, len(payload)) + payload)
            except OSError:
                pass
        with self.lock:
            self.children.discard(child)
        close_stdin()

    @staticmethod
    def _watchdog(child: Child, timeout: float) -> None:
        """Kill the command's process group once ``timeout`` seconds passed (it then exits with 124)."""
        if not child.exited.wait(timeout):
            child.timed_out = True
            _kill_group(child.pid)

    def stop_all(self) -> None:
        """Terminate every running exec (SIGTERM, then SIGKILL after a grace period)."""
        with self.lock:
            children = list(self.children)
        for child in children:
            _kill_group(child.pid, SIGTERM)
        for child in children:
            if not child.exited.wait(TERM_GRACE):
                _kill_group(child.pid)


def _private_fds(keep: set[int]) -> None:
    """Make every descriptor but stdio and ``keep`` close-on-exec, so no command inherits it."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # pragma: no cover - /proc is always mounted in the sandbox
        return
    for name in names:
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def main(argv: list[str]) -> int:
    """Run the agent with the JSON configuration file named by ``argv[1]``."""
    with open(argv[1], encoding="utf-8") as handle:
        config = json_loads(handle.read())
    _private_fds(set())
    # Small stacks for the agent's threads (relays, execs): 8 MiB each would eat into RLIMIT_AS, which stands
    # in for the memory limit where there is no memory cgroup.
    _thread.stack_size(2 * 1024 * 1024)
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
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    listener.bind(config["control"])
    listener.listen(64)
    _thread.start_new_thread(agent.serve_control, (listener,))
    command = config.get("command")
    agent.report("ready")
    if config.get("mode") == "one-shot" and command:
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            main_child = spawn(list(command), agent.env, agent.cwd, (null, 1, 2))
        except OSError as error:
            code, message = _spawn_failure(error, command[0])
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
            agent.report(f"exit {code}")
            return code
        finally:
            os.close(null)
        code = main_child.wait()
        agent.stop_all()
        agent.report(f"exit {code}")
        return code
    agent.shutdown.wait()
    agent.stop_all()
    agent.report("exit 0")
    return 0


if __name__ == "__main__":
    status = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter shutdown: nothing is left to clean up, and the sandbox ends as soon as the agent is gone.
    os._exit(status)
