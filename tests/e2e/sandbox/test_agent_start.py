"""The in-sandbox agent on its own: what it imports at start (it is on every sandbox's critical path), its
JSON helpers, how it starts commands (``posix_spawn`` instead of ``subprocess``), and its compiled form."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sandbox_helpers import Sandboxes

from tilde.server.sandbox import _agent
from tilde.server.sandbox.agent_client import HEADER
from tilde.server.sandbox.isolation import AGENT_SCRIPT
from tilde.server.sandbox.runtime import compile_agent

pytestmark = pytest.mark.sandbox

#: Modules whose import would put ``re``, ``enum`` and friends back on the start-up path.
HEAVY = {"subprocess", "socket", "threading", "json", "re", "enum", "typing", "selectors", "collections"}


def test_agent_imports_only_builtin_modules() -> None:
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        f"path = {AGENT_SCRIPT!r}\n"
        "exec(compile(open(path).read(), path, 'exec'), {'__name__': 'agent'})\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "_socket" in out  # the probe saw the agent's imports
    assert HEAVY.isdisjoint(out), sorted(HEAVY & set(out))


@pytest.mark.parametrize(
    "value",
    [
        {"cmd": ["sh", "-c", "echo 'ü' \"q\""], "env": {"A": "1"}, "cwd": "/x", "timeout": 2.5},
        {"exit_code": -1, "error": "agent error: \u2603\n\t\\", "reason": None, "ok": True, "no": False},
        [1, 2.0, "three", [], {}],
    ],
)
def test_json_helpers_agree_with_the_json_module(value: object) -> None:
    assert _agent.json_loads(json.dumps(value)) == value
    assert _agent.json_loads(json.dumps(value).encode()) == value
    assert json.loads(_agent.json_dumps(value)) == value


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "[1,]", "nul"])
def test_json_loads_refuses_what_is_not_one_document(text: str) -> None:
    with pytest.raises(ValueError):
        _agent.json_loads(text)


# -- the agent run on the host (no bubblewrap): commands it starts -------------------------------------------


def _frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def _exec(control: str, cmd: list[str], **launch: object) -> tuple[bytes, bytes, dict[str, object]]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(control)
        # One write: a command that cannot start is answered (and its connection closed) at once.
        launch_frame = _frame(_agent.FRAME_LAUNCH, json.dumps({"cmd": cmd, **launch}).encode())
        sock.sendall(launch_frame + _frame(_agent.FRAME_STDIN_CLOSE))
        reader = sock.makefile("rb")
        out, err = b"", b""
        while True:
            kind, length = HEADER.unpack(reader.read(HEADER.size))
            payload = reader.read(length)
            if kind == _agent.FRAME_STDOUT:
                out += payload
            elif kind == _agent.FRAME_STDERR:
                err += payload
            elif kind == _agent.FRAME_EXIT:
                return out, err, json.loads(payload)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[str]:
    status_r, status_w = os.pipe()
    leaked = os.open(os.devnull, os.O_RDONLY)  # an inherited descriptor no command may see
    os.set_inheritable(leaked, True)
    config = {
        "mode": "service",
        "env": {"PATH": os.environ.get("PATH", os.defpath), "FROM_CONFIG": "yes"},
        "cwd": str(tmp_path),
        "control": str(tmp_path / "ctl.sock"),
        "status_fd": status_w,
    }
    (tmp_path / "agent.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", AGENT_SCRIPT, str(tmp_path / "agent.json")],
        pass_fds=[status_w, leaked],
    )
    os.close(status_w)
    os.close(leaked)
    try:
        with os.fdopen(status_r, "rb") as status:
            assert status.readline() == b"ready\n"
            yield str(tmp_path / "ctl.sock")
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(tmp_path / "ctl.sock"))
                sock.sendall(_frame(_agent.FRAME_SHUTDOWN))
            assert status.readline() == b"exit 0\n"
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_commands_get_stdio_only_and_default_signals(agent: str) -> None:
    # ``ls`` itself holds one more descriptor (3) for the directory it lists; the agent's are all gone.
    assert _exec(agent, ["ls", "/proc/self/fd"])[0].split() == [b"0", b"1", b"2", b"3"]
    # The interpreter ignores SIGPIPE and SIGXFSZ; commands get the defaults back.
    ignored = int(_exec(agent, ["grep", "SigIgn", "/proc/self/status"])[0].split()[1], 16)
    assert ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1)) == 0


def test_commands_see_environment_working_directory_and_exit_codes(agent: str, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    out, err, body = _exec(
        agent,
        ["sh", "-c", 'echo "$FROM_CONFIG $EXTRA $PWD"; echo e >&2; exit 7'],
        env={"EXTRA": "x"},
        cwd=str(tmp_path / "sub"),
    )
    assert (out, err, body) == (f"yes x {tmp_path / 'sub'}\n".encode(), b"e\n", {"exit_code": 7})
    assert _exec(agent, ["no-such-command-here"])[2]["exit_code"] == 127
    assert _exec(agent, [str(tmp_path)])[2]["exit_code"] == 126
    assert _exec(agent, ["true"], cwd=str(tmp_path / "missing"))[2]["exit_code"] == 127
    assert _exec(agent, ["sh", "-c", "kill -9 $$"])[2] == {"exit_code": 137}


def test_timeout_stops_the_command_and_reports_124(agent: str) -> None:
    _, _, body = _exec(agent, ["sleep", "600"], timeout=0.5)
    assert body == {"exit_code": 124, "reason": "timeout"}


# -- compiled once per server ---------------------------------------------------------------------------


def test_the_agent_is_compiled_once_and_stale_versions_go(tmp_path: Path) -> None:
    directory = tmp_path / "agent"
    directory.mkdir()
    (directory / "agent-0123456789abcdef.pyc").write_bytes(b"an older version")
    code = compile_agent(directory)
    assert code is not None
    assert sorted(p.name for p in directory.iterdir()) == [Path(code).name]
    made = os.stat(code).st_mtime_ns
    assert compile_agent(directory) == code
    assert os.stat(code).st_mtime_ns == made  # not written again
    # The file is the agent: run as a script, it serves like the source does.
    probe = f"import runpy; m = runpy.run_path({code!r}, run_name='agent'); print(m['FRAME_EXIT'])"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, check=True)
    assert out.stdout == b"5\n"


def test_sandboxes_run_the_compiled_agent(sandboxes: Sandboxes, service: Callable[..., str]) -> None:
    sid = service()
    # The agent is the parent of the command's shell.
    result = sandboxes.exec(sid, "tr '\\0' ' ' < /proc/$PPID/cmdline")
    assert result.exit_code == 0, result.stderr
    assert b"/.tilde/agent.pyc /run/tilde/agent.json" in result.stdout, result.stdout
