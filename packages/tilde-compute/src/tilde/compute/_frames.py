"""The binary frames of the ``/exec`` websocket (CONTRACT §7).

Every message is binary: byte 0 is the frame type and the rest is the payload. This module only encodes and
decodes; the connection handling lives in :mod:`tilde.compute._exec`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence

FRAME_LAUNCH = 0x00
FRAME_STDIN = 0x01
FRAME_STDIN_CLOSE = 0x02
FRAME_STDOUT = 0x03
FRAME_STDERR = 0x04
FRAME_EXIT = 0x05

# The published client library refuses messages above 1 MiB by default, so our own stdin frames stay below
# that too: a server written for it may use the same limit.
MAX_MESSAGE_SIZE = 1024 * 1024
_MAX_PAYLOAD = MAX_MESSAGE_SIZE - 1

#: Exit code reported when the server's EXIT payload carries no usable ``exit_code``.
UNKNOWN_EXIT_CODE = -1


def command_argv(command: str | Sequence[str]) -> list[str]:
    """Return the argv sent for a command: a string runs through ``sh -c``, a list is executed as is.

    Args:
        command: A shell command line, or an argv list.

    Returns:
        The argv list.

    Raises:
        ValueError: If an argv list is empty.

    """
    if isinstance(command, str):
        return ["sh", "-c", command]
    argv = [str(part) for part in command]
    if not argv:
        raise ValueError("command must not be an empty list")
    return argv


def command_text(command: str | Sequence[str]) -> str:
    """Return a command as errors report it (an argv list joined by spaces).

    Args:
        command: A shell command line, or an argv list.

    Returns:
        The command as one string.

    """
    return command if isinstance(command, str) else " ".join(str(part) for part in command)


def launch_frame(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
) -> bytes:
    """Encode the LAUNCH frame; keys are omitted when not given, as the contract requires.

    Args:
        argv: The command's argv.
        env: Variables merged over the sandbox environment.
        cwd: The working directory inside the sandbox.
        timeout: Seconds after which the server kills the command (our extension; others ignore it).

    Returns:
        The frame bytes.

    """
    body: dict[str, object] = {"cmd": list(argv)}
    if env is not None:
        body["env"] = {str(key): str(value) for key, value in env.items()}
    if cwd is not None:
        body["cwd"] = cwd
    if timeout is not None:
        body["timeout"] = timeout
    return bytes([FRAME_LAUNCH]) + json.dumps(body, separators=(",", ":")).encode()


def stdin_frames(data: bytes) -> Iterator[bytes]:
    """Encode ``data`` as STDIN frames of at most 1 MiB each (nothing for empty data).

    Args:
        data: Bytes for the command's standard input.

    Yields:
        STDIN frames.

    """
    view = memoryview(data)
    for start in range(0, len(view), _MAX_PAYLOAD):
        yield bytes([FRAME_STDIN]) + view[start : start + _MAX_PAYLOAD].tobytes()


STDIN_CLOSE = bytes([FRAME_STDIN_CLOSE])


def split_frame(message: str | bytes) -> tuple[int, bytes] | None:
    """Split a received message into ``(frame type, payload)``.

    Args:
        message: A websocket message as the client library returns it.

    Returns:
        The frame type and payload, or None for messages the protocol says to ignore (text and empty ones).

    """
    if isinstance(message, str) or not message:
        return None
    return message[0], bytes(message[1:])


def parse_exit(payload: bytes) -> tuple[int, str, str]:
    """Decode an EXIT payload into ``(exit_code, reason, error)``.

    A payload that is not a JSON object, lacks ``exit_code``, or whose value ``int()`` rejects yields exit
    code -1, as the contract prescribes.

    Args:
        payload: The EXIT frame's payload.

    Returns:
        The exit code, and the optional ``reason`` and ``error`` strings ("" when absent).

    """
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return UNKNOWN_EXIT_CODE, "", ""
    if not isinstance(body, dict):
        return UNKNOWN_EXIT_CODE, "", ""
    reason = body.get("reason")
    error = body.get("error")
    reason_text = reason if isinstance(reason, str) else ""
    error_text = error if isinstance(error, str) else ""
    if "exit_code" not in body:
        return UNKNOWN_EXIT_CODE, reason_text, error_text
    try:
        code = int(body["exit_code"])
    except (TypeError, ValueError, OverflowError):
        code = UNKNOWN_EXIT_CODE
    return code, reason_text, error_text
