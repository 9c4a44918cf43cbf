"""Encryption at rest: AES-256-GCM under the server's master key (secrets, connector credentials).

The master key comes from the environment variable ``TILDE_SERVER_MASTER_KEY`` when it is set, otherwise
from ``data_dir/master_key`` (32 random bytes, generated with mode 0600 on first start). The variable may
hold several comma-separated keys (URL-safe base64 of 32 bytes each): the first encrypts, every one of them
decrypts — which is how a key is rotated (see `SecretBox.reencrypt`).

Sealed values are one version byte (1), a key id (4 bytes), a nonce (12 bytes), then the ciphertext with
its tag. The key id is the first four bytes of SHA-256 of the key, so the right key is found without trying
each one. Every value is bound to a *context* string (as associated data), e.g.
``"secret:repo:<repo_id>:<KEY>"``: a sealed value copied into another row does not decrypt there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tilde.server.config import write_private_file

__all__ = [
    "MASTER_KEY_ENV",
    "MASTER_KEY_FILE",
    "DecryptionError",
    "SecretBox",
    "encode_key",
    "load_master_keys",
]

MASTER_KEY_ENV = "TILDE_SERVER_MASTER_KEY"
MASTER_KEY_FILE = "master_key"
_VERSION = b"\x01"
_KEY_BYTES = 32
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """A sealed value could not be opened (unknown key, tampered data or wrong context)."""


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:4]


def encode_key(key: bytes) -> str:
    """Return the text form of a master key (URL-safe base64, as ``TILDE_SERVER_MASTER_KEY`` takes it)."""
    return base64.urlsafe_b64encode(key).decode("ascii")


def _decode_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{MASTER_KEY_ENV}: not URL-safe base64") from None
    if len(key) != _KEY_BYTES:
        raise ValueError(f"{MASTER_KEY_ENV}: each key must be {_KEY_BYTES} bytes (got {len(key)})")
    return key


def load_master_keys(data_dir: Path) -> list[bytes]:
    """Return the master keys, the current (encrypting) one first.

    Args:
        data_dir: The server's data directory (holds the generated key when the environment has none).

    Raises:
        ValueError: ``TILDE_SERVER_MASTER_KEY`` is malformed.

    """
    configured = os.environ.get(MASTER_KEY_ENV, "").strip()
    if configured:
        return [_decode_key(part) for part in configured.split(",") if part.strip()]
    path = data_dir / MASTER_KEY_FILE
    if path.exists():
        data = path.read_bytes()
        if len(data) == _KEY_BYTES:
            return [data]
    key = AESGCM.generate_key(bit_length=8 * _KEY_BYTES)
    write_private_file(path, key)
    return [key]


class SecretBox:
    """Seals and opens small values with AES-256-GCM.

    Args:
        keys: The master keys; the first seals, all of them open.

    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one master key is required")
        self._current = keys[0]
        self._by_id = {_key_id(key): AESGCM(key) for key in reversed(keys)}

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        """Encrypt ``plaintext`` bound to ``context`` with the current key."""
        nonce = os.urandom(_NONCE_BYTES)
        key_id = _key_id(self._current)
        return _VERSION + key_id + nonce + self._by_id[key_id].encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, *, context: str) -> bytes:
        """Decrypt a value sealed by `seal` with the same ``context``.

        Raises:
            DecryptionError: Unknown key, tampered value or a different context.

        """
        if len(sealed) < 1 + 4 + _NONCE_BYTES or sealed[:1] != _VERSION:
            raise DecryptionError("not a sealed value")
        aead = self._by_id.get(sealed[1:5])
        if aead is None:
            raise DecryptionError("sealed with a master key this server does not have")
        nonce = sealed[5 : 5 + _NONCE_BYTES]
        try:
            return aead.decrypt(nonce, sealed[5 + _NONCE_BYTES :], context.encode())
        except InvalidTag:
            raise DecryptionError("the sealed value was tampered with or belongs elsewhere") from None

    def is_current(self, sealed: bytes) -> bool:
        """Tell whether ``sealed`` was made with the current key (False means: re-seal it)."""
        return sealed[1:5] == _key_id(self._current)

    def reencrypt(self, sealed: bytes, *, context: str) -> bytes:
        """Return ``sealed`` re-encrypted under the current key (unchanged when it already is)."""
        if self.is_current(sealed):
            return sealed
        return self.seal(self.open(sealed, context=context), context=context)
