"""SecretBox (AES-256-GCM under the master key) and how the master key is found."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tilde.server.crypto import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE,
    DecryptionError,
    SecretBox,
    encode_key,
    load_master_keys,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))


def test_round_trip_under_the_same_context() -> None:
    box = SecretBox([KEY_A])
    sealed = box.seal(b"hunter2", context="secret:repo:r1:TOKEN")
    assert b"hunter2" not in sealed
    assert box.open(sealed, context="secret:repo:r1:TOKEN") == b"hunter2"


def test_each_seal_uses_a_fresh_nonce() -> None:
    box = SecretBox([KEY_A])
    assert box.seal(b"v", context="c") != box.seal(b"v", context="c")


def test_another_context_does_not_open() -> None:
    box = SecretBox([KEY_A])
    sealed = box.seal(b"value", context="secret:repo:r1:TOKEN")
    with pytest.raises(DecryptionError):
        box.open(sealed, context="secret:repo:r2:TOKEN")
    with pytest.raises(DecryptionError):
        box.open(sealed, context="secret:agent:r1:TOKEN")


@pytest.mark.parametrize("position", [0, 3, 10, 20, -1])
def test_tampering_is_detected(position: int) -> None:
    box = SecretBox([KEY_A])
    sealed = bytearray(box.seal(b"value", context="c"))
    sealed[position] ^= 0x01
    with pytest.raises(DecryptionError):
        box.open(bytes(sealed), context="c")


def test_truncated_value_is_refused() -> None:
    box = SecretBox([KEY_A])
    with pytest.raises(DecryptionError):
        box.open(b"\x01abc", context="c")


def test_unknown_key_is_refused() -> None:
    sealed = SecretBox([KEY_A]).seal(b"value", context="c")
    with pytest.raises(DecryptionError, match="master key"):
        SecretBox([KEY_B]).open(sealed, context="c")


def test_rotation_reseals_under_the_new_key() -> None:
    old = SecretBox([KEY_A])
    sealed = old.seal(b"value", context="c")
    both = SecretBox([KEY_B, KEY_A])
    assert both.open(sealed, context="c") == b"value"  # the old key still opens
    assert not both.is_current(sealed)
    fresh = both.reencrypt(sealed, context="c")
    assert both.is_current(fresh)
    assert both.reencrypt(fresh, context="c") == fresh  # already current: unchanged
    assert SecretBox([KEY_B]).open(fresh, context="c") == b"value"
    with pytest.raises(DecryptionError):
        old.open(fresh, context="c")


def test_no_keys_is_an_error() -> None:
    with pytest.raises(ValueError):
        SecretBox([])


def test_generated_key_is_stored_privately_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    [key] = load_master_keys(tmp_path)
    path = tmp_path / MASTER_KEY_FILE
    assert len(key) == 32
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_keys(tmp_path) == [key]


def test_environment_keys_win_and_none_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, f"{encode_key(KEY_B)}, {encode_key(KEY_A)}")
    assert load_master_keys(tmp_path) == [KEY_B, KEY_A]
    assert not (tmp_path / MASTER_KEY_FILE).exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!!", "base64"),
        (encode_key(b"short"), "32 bytes"),
        (encode_key(KEY_A) + ",x", MASTER_KEY_ENV),
    ],
)
def test_malformed_environment_variable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, value)
    with pytest.raises(ValueError, match=message):
        load_master_keys(tmp_path)


def test_unpadded_keys_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, encode_key(KEY_A).rstrip("="))
    assert load_master_keys(tmp_path) == [KEY_A]
