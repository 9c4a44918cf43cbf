from __future__ import annotations

import json

import pytest

from tilde.compute import _frames as frames


def test_command_argv_wraps_strings_in_sh_and_passes_lists_through() -> None:
    assert frames.command_argv("echo hi | wc -c") == ["sh", "-c", "echo hi | wc -c"]
    assert frames.command_argv(["ls", "-l"]) == ["ls", "-l"]
    assert frames.command_argv(("a",)) == ["a"]
    with pytest.raises(ValueError, match="empty"):
        frames.command_argv([])


def test_command_text_joins_argv() -> None:
    assert frames.command_text("ls -l") == "ls -l"
    assert frames.command_text(["ls", "-l"]) == "ls -l"


def test_launch_frame_omits_keys_not_given() -> None:
    frame = frames.launch_frame(["true"])
    assert frame[0] == frames.FRAME_LAUNCH
    assert json.loads(frame[1:]) == {"cmd": ["true"]}


def test_launch_frame_carries_env_cwd_and_timeout() -> None:
    frame = frames.launch_frame(["sh", "-c", "x"], env={"A": "1"}, cwd="/sandbox/d", timeout=2.5)
    assert json.loads(frame[1:]) == {
        "cmd": ["sh", "-c", "x"],
        "env": {"A": "1"},
        "cwd": "/sandbox/d",
        "timeout": 2.5,
    }


def test_stdin_frames_split_below_one_mebibyte() -> None:
    data = bytes(range(256)) * (5 * 4096 + 7)  # a bit over 5 MiB
    chunks = list(frames.stdin_frames(data))
    assert all(chunk[0] == frames.FRAME_STDIN for chunk in chunks)
    assert all(len(chunk) <= frames.MAX_MESSAGE_SIZE for chunk in chunks)
    assert b"".join(chunk[1:] for chunk in chunks) == data
    assert list(frames.stdin_frames(b"")) == []


@pytest.mark.parametrize("message", ["text frame", b"", ""])
def test_text_and_empty_messages_are_ignored(message: str | bytes) -> None:
    assert frames.split_frame(message) is None


def test_split_frame_returns_type_and_payload_even_for_unknown_types() -> None:
    assert frames.split_frame(b"\x03out") == (3, b"out")
    assert frames.split_frame(b"\x7fwhatever") == (0x7F, b"whatever")
    assert frames.split_frame(b"\x05") == (5, b"")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"exit_code": 0}', 0),
        (b'{"exit_code": 3}', 3),
        (b'{"exit_code": "7"}', 7),
        (b'{"exit_code": 2.9}', 2),
        (b'{"exit_code": -15}', -15),
        (b'{"exit_code": null}', -1),
        (b'{"exit_code": "seven"}', -1),
        (b'{"exit_code": [1]}', -1),
        (b'{"exit_code": 1e999}', -1),
        (b'{"code": 0}', -1),
        (b"[0]", -1),
        (b"0", -1),
        (b"not json", -1),
        (b"\xff\xfe", -1),
        (b"", -1),
    ],
)
def test_parse_exit_defaults_to_minus_one(payload: bytes, expected: int) -> None:
    assert frames.parse_exit(payload)[0] == expected


def test_parse_exit_reads_reason_and_error() -> None:
    assert frames.parse_exit(b'{"exit_code": 124, "reason": "timeout", "error": "killed"}') == (
        124,
        "timeout",
        "killed",
    )
    assert frames.parse_exit(b'{"exit_code": 1, "reason": 5}') == (1, "", "")
