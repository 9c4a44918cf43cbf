"""What a connector may be: its name, type, ``source_uri`` and ``config`` (every failure is a 400 `ApiError`).

Two types are served: ``s3`` (``s3://bucket/prefix/`` with static credentials, optionally on an S3-compatible
endpoint) and ``local`` (``file:///abs/dir/``, a directory on the server, for offline use). The contract's
other types (``gcs``, ``git``, ``google_drive``) are refused with a message saying so.

A local connector may only name a directory under one of the roots listed in the environment variable
``TILDE_SERVER_LOCAL_CONNECTOR_ROOTS`` (``os.pathsep``-separated absolute directories); without it local
connectors are refused. The variable is read at each use, so an operator can narrow it without a restart.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tilde.server.errors import ApiError

__all__ = [
    "LOCAL_ROOTS_ENV",
    "SUPPORTED_TYPES",
    "ConnectorSpec",
    "S3Location",
    "check_connector",
    "local_directory",
    "local_roots",
    "parse_s3_uri",
]

LOCAL_ROOTS_ENV = "TILDE_SERVER_LOCAL_CONNECTOR_ROOTS"
SUPPORTED_TYPES = ("s3", "local")
#: Contract types this server does not implement (400 with a clear message rather than "unknown").
_UNSUPPORTED_TYPES = ("gcs", "git", "google_drive")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
# S3 bucket naming rules (lowercase letters, digits, dots and hyphens; 3-63 characters).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_REGION_RE = re.compile(r"^[a-z0-9-]{1,64}\Z")
_S3_REQUIRED = ("access_key_id", "secret_access_key", "region")
_S3_OPTIONAL = ("endpoint_url", "session_token")
_MAX_CONFIG_VALUE = 4096


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (possibly empty) parsed from ``s3://bucket/prefix``."""

    bucket: str
    prefix: str


@dataclass(frozen=True)
class ConnectorSpec:
    """A validated connector definition, ready to store.

    Attributes:
        name: The connector's name.
        type: ``"s3"`` or ``"local"``.
        source_uri: The normalised source URI.
        display_source: What to show users (equal to ``source_uri`` for both types).
        config: The credentials and settings to seal (never returned by any route).

    """

    name: str
    type: str
    source_uri: str
    display_source: str
    config: dict[str, str]


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_connector", message)


def parse_s3_uri(uri: str) -> S3Location:
    """Split ``s3://bucket/prefix`` (400 when it is not one)."""
    if not uri.startswith("s3://"):
        raise _bad("an s3 connector's source_uri must look like s3://bucket/prefix/")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise _bad(f"invalid bucket name {bucket!r} in source_uri (3-63 lowercase letters, digits, '.', '-')")
    if prefix.startswith("/") or "//" in prefix:
        raise _bad("the source_uri's key prefix must not start with '/' or contain '//'")
    return S3Location(bucket, prefix)


def local_roots() -> list[Path]:
    """Return the directories local connectors may read (resolved), from `LOCAL_ROOTS_ENV`."""
    raw = os.environ.get(LOCAL_ROOTS_ENV, "")
    roots = []
    for part in raw.split(os.pathsep):
        if part.strip() and os.path.isabs(part.strip()):
            roots.append(Path(os.path.realpath(part.strip())))
    return roots


def local_directory(path: str) -> Path:
    """Return ``path`` resolved, once known to be an existing directory under an allowed root (else 400).

    Symbolic links are resolved before the check, so a link cannot lead out of the allowed roots.
    """
    roots = local_roots()
    if not roots:
        raise _bad(
            f"local connectors are disabled on this server (set {LOCAL_ROOTS_ENV} to allow directories)"
        )
    if not os.path.isabs(path):
        raise _bad("a local connector's directory must be an absolute path")
    resolved = Path(os.path.realpath(path))
    if not any(resolved == root or root in resolved.parents for root in roots):
        raise _bad(f"directory {path!r} is not under a directory this server allows ({LOCAL_ROOTS_ENV})")
    if not resolved.is_dir():
        raise _bad(f"directory {path!r} does not exist on the server")
    return resolved


def _config(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _bad("config must be an object")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise _bad(f"config.{key} must be a string")
        if len(item) > _MAX_CONFIG_VALUE:
            raise _bad(f"config.{key} is longer than {_MAX_CONFIG_VALUE} characters")
        result[str(key)] = item
    return result


def _check_s3(uri: str, config: dict[str, str]) -> tuple[str, dict[str, str]]:
    parse_s3_uri(uri)
    unknown = sorted(set(config) - set(_S3_REQUIRED) - set(_S3_OPTIONAL))
    if unknown:
        raise _bad(
            f"unknown s3 config keys: {', '.join(unknown)}"
            f" (allowed: {', '.join(_S3_REQUIRED + _S3_OPTIONAL)})"
        )
    for key in _S3_REQUIRED:
        if not config.get(key, "").strip():
            raise _bad(f"an s3 connector needs config.{key}")
    if not _REGION_RE.match(config["region"]):
        raise _bad("config.region must be a region name such as us-east-1")
    endpoint = config.get("endpoint_url")
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise _bad("config.endpoint_url must be an http(s) URL such as https://s3.example.com")
    return uri, {key: value for key, value in config.items() if value != "" or key in _S3_REQUIRED}


def _check_local(uri: str, config: dict[str, str]) -> tuple[str, dict[str, str]]:
    unknown = sorted(set(config) - {"path"})
    if unknown:
        raise _bad(f"unknown local config keys: {', '.join(unknown)} (allowed: path)")
    from_uri = None
    if uri:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise _bad("a local connector's source_uri must look like file:///absolute/directory/")
        from_uri = unquote(parts.path)
    from_config = config.get("path") or None
    if from_uri is None and from_config is None:
        raise _bad("a local connector needs source_uri file:///absolute/directory/ or config.path")
    if from_uri is not None and from_config is not None and from_uri.rstrip("/") != from_config.rstrip("/"):
        raise _bad("source_uri and config.path name different directories")
    directory = local_directory(from_uri or from_config or "")
    return directory.as_uri().rstrip("/") + "/", {"path": str(directory)}


def check_connector(body: dict[str, Any]) -> ConnectorSpec:
    """Validate a create-connector body ``{name, type, source_uri, config}`` (400 with a specific message).

    Args:
        body: The request body.

    Returns:
        The connector to store; a local connector's ``source_uri`` names the resolved directory.

    """
    name = body.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise _bad("name must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit")
    kind = body.get("type")
    if kind in _UNSUPPORTED_TYPES:
        raise ApiError(
            400, "unsupported_connector_type", f"connector type {kind!r} is not supported by this server"
        )
    if kind not in SUPPORTED_TYPES:
        raise _bad(f"type must be one of {', '.join(SUPPORTED_TYPES + _UNSUPPORTED_TYPES)}")
    uri = body.get("source_uri", "")
    if not isinstance(uri, str) or len(uri) > 2048:
        raise _bad("source_uri must be a string of at most 2048 characters")
    if "config" not in body:
        raise _bad("config is required")
    config = _config(body["config"])
    if kind == "s3":
        uri, config = _check_s3(uri, config)
    else:
        uri, config = _check_local(uri, config)
    return ConnectorSpec(name=name, type=str(kind), source_uri=uri, display_source=uri, config=config)
