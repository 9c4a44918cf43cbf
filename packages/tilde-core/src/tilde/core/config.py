"""Client settings and where they come from.

Resolution (first non-empty value wins; empty strings count as unset):

- ``endpoint_url``: argument > ``TILDE_ENDPOINT_URL`` > ``TILDE_API_URL`` > ``endpoint_url`` in the config
  file > ``https://tilde.run``.
- ``api_key``: argument > ``TILDE_API_KEY`` > ``api_key`` in the config file (the token chain in
  `tilde.core.auth` adds the sandbox credentials URI and plugin providers after these).
- ``default_sandbox_image``: argument > ``TILDE_DEFAULT_SANDBOX_IMAGE`` > ``ubuntu:22.04``.

The config file is ``~/.tilde/config.yaml`` (written by ``tilde auth login``): a YAML mapping of which only
the string keys ``api_key`` and ``endpoint_url`` are read. A missing, unreadable or malformed file is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_ENDPOINT_URL",
    "DEFAULT_SANDBOX_IMAGE",
    "ENV_API_KEY",
    "ENV_API_URL",
    "ENV_DEFAULT_SANDBOX_IMAGE",
    "ENV_ENDPOINT_URL",
    "Configuration",
    "read_config_file",
    "resolve_config",
]

DEFAULT_ENDPOINT_URL = "https://tilde.run"
DEFAULT_SANDBOX_IMAGE = "ubuntu:22.04"

ENV_API_KEY = "TILDE_API_KEY"
ENV_ENDPOINT_URL = "TILDE_ENDPOINT_URL"
ENV_API_URL = "TILDE_API_URL"
ENV_DEFAULT_SANDBOX_IMAGE = "TILDE_DEFAULT_SANDBOX_IMAGE"

_CONFIG_FILE_KEYS = ("api_key", "endpoint_url")


def _default_config_path() -> Path:
    # A function (not a constant) so the home directory is looked up on every call: tests and tools change
    # HOME, or replace this function, after import.
    return Path.home() / ".tilde" / "config.yaml"


@dataclass(frozen=True)
class Configuration:
    """Resolved client settings.

    Attributes:
        endpoint_url: The server's root URL, e.g. ``https://tilde.run``.
        api_key: The static API key, or None when none is configured (a token may still come from a
            credentials provider).
        default_sandbox_image: The image sandboxes use when the caller names none.

    """

    endpoint_url: str
    api_key: str | None
    default_sandbox_image: str

    @property
    def base_url(self) -> str:
        """The API root: the endpoint without trailing slashes, plus ``/api/v1``."""
        return self.endpoint_url.rstrip("/") + "/api/v1"

    def __repr__(self) -> str:
        # Never print the key itself: reprs end up in logs and tracebacks.
        key = "None" if self.api_key is None else "'***'"
        return (
            f"Configuration(endpoint_url={self.endpoint_url!r}, api_key={key}, "
            f"default_sandbox_image={self.default_sandbox_image!r})"
        )


def read_config_file(path: Path | None = None) -> dict[str, str]:
    """Read the settings stored in the config file.

    Args:
        path: The file to read; defaults to ``~/.tilde/config.yaml`` (resolved now, not at import).

    Returns:
        The non-empty string values of ``api_key`` and ``endpoint_url``; an empty dict when the file is
        missing, unreadable, not YAML or not a mapping.

    """
    target = path if path is not None else _default_config_path()
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    import yaml  # only when a file exists: yaml costs more to import than the rest of the SDK

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: value for key in _CONFIG_FILE_KEYS if isinstance(value := data.get(key), str) and value}


def _first(*values: str | None) -> str | None:
    for value in values:
        if value:
            return value
    return None


def resolve_config(
    *,
    endpoint_url: str | None = None,
    api_key: str | None = None,
    default_sandbox_image: str | None = None,
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    config_file: Mapping[str, str] | None = None,
) -> Configuration:
    """Resolve the client settings from arguments, environment and config file.

    Args:
        endpoint_url: Explicit endpoint; wins over everything else when non-empty.
        api_key: Explicit API key; wins over the environment and the config file when non-empty.
        default_sandbox_image: Explicit default sandbox image.
        environ: The environment to read (defaults to `os.environ`).
        config_path: The config file to read (defaults to ``~/.tilde/config.yaml``).
        config_file: Settings already read with `read_config_file`; when given, no file is read.

    Returns:
        The resolved `Configuration`. A missing key is not an error here; requests fail later with
        `ConfigurationError` if no token source exists at all.

    """
    env = os.environ if environ is None else environ
    file_settings = config_file if config_file is not None else read_config_file(config_path)
    return Configuration(
        endpoint_url=_first(
            endpoint_url,
            env.get(ENV_ENDPOINT_URL),
            env.get(ENV_API_URL),
            file_settings.get("endpoint_url"),
        )
        or DEFAULT_ENDPOINT_URL,
        api_key=_first(api_key, env.get(ENV_API_KEY), file_settings.get("api_key")),
        default_sandbox_image=_first(default_sandbox_image, env.get(ENV_DEFAULT_SANDBOX_IMAGE))
        or DEFAULT_SANDBOX_IMAGE,
    )
