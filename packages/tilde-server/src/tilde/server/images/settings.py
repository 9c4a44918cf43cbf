"""The server's image settings: its image store, and registry credentials read from a file."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilde.server.images.store import ImageStore

if TYPE_CHECKING:
    from tilde.server.config import ServerConfig

__all__ = ["IMAGES_DIR", "parse_registry_credentials", "read_registry_credentials", "server_image_store"]

#: The image store's directory under the server's data directory.
IMAGES_DIR = "images"


def server_image_store(config: ServerConfig) -> ImageStore:
    """Return the image store of a server: ``<data-dir>/images`` with its mirrors, limit and credentials.

    Raises:
        ValueError: A registry mirror URL is not acceptable.

    """
    credentials = dict(config.registry_credentials)
    return ImageStore(
        Path(config.data_dir) / IMAGES_DIR,
        mirrors=config.registry_mirrors,
        max_bytes=config.image_cache_bytes,
        credentials=credentials.get if credentials else None,
    )


def _pair(host: str, entry: Any) -> tuple[str, str]:
    if not isinstance(entry, dict):
        raise ValueError(f"registry credentials for {host!r} must be an object")
    if isinstance(entry.get("auth"), str):
        try:
            user, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(
                f"registry credentials for {host!r}: 'auth' is not base64(user:password)"
            ) from None
        return user, password
    name, secret = entry.get("username"), entry.get("password")
    if not isinstance(name, str) or not isinstance(secret, str):
        raise ValueError(f"registry credentials for {host!r} need 'auth', or 'username' and 'password'")
    return name, secret


def read_registry_credentials(path: Path) -> dict[str, tuple[str, str]]:
    """Read registry credentials from a JSON file in Docker's ``config.json`` form.

    ``{"auths": {"host[:port]": {"auth": base64("user:password")}}}``; ``username``/``password`` members are
    accepted instead of ``auth``. Hosts may be written as URLs (``https://index.docker.io/v1/`` is Docker
    Hub, stored under ``docker.io``).

    Raises:
        ValueError: The file is missing, not JSON, or an entry is malformed (the message names it, never a
            secret).

    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read registry credentials from {path}: {error.strerror or error}") from None
    return parse_registry_credentials(text, f"registry credentials file {path}")


def parse_registry_credentials(text: str, source: str) -> dict[str, tuple[str, str]]:
    """Parse registry credentials in Docker's ``config.json`` form (see `read_registry_credentials`).

    Args:
        text: The JSON document.
        source: What it is, for error messages (``registry credentials file …``, ``secret …``).

    Raises:
        ValueError: Not JSON, or an entry is malformed (the message names it, never a secret).

    """
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError(f"{source} is not JSON") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        raise ValueError(f"{source} has no 'auths' object")
    found: dict[str, tuple[str, str]] = {}
    for key, entry in auths.items():
        host = str(key).removeprefix("https://").removeprefix("http://").split("/", 1)[0]
        if host in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
            host = "docker.io"
        found[host] = _pair(host, entry)
    return found
