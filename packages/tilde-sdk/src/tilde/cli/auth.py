"""``tilde auth``: store the credentials every SDK client picks up by default.

The file is ``~/.tilde/config.yaml``, the same one `tilde.core.config.resolve_config` reads. It holds a
secret, so it is written with mode 0600 (in a 0700 directory) and replaced atomically: a crash mid-write never
leaves a truncated file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click
import yaml

from tilde.core.config import _default_config_path

__all__ = ["auth", "config_path"]


def config_path() -> Path:
    """Where the credentials live: ``~/.tilde/config.yaml`` for the current home directory.

    The very path `tilde.core.config.read_config_file` reads by default.
    """
    return _default_config_path()


def _read_existing(path: Path) -> dict[str, Any]:
    # Keep keys other tools may have written; a missing or unreadable file simply starts afresh.
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return dict(data) if isinstance(data, dict) else {}


def _write_private(path: Path, settings: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".config-", suffix=".yaml", dir=path.parent)
    try:
        # mkstemp already creates the file 0600; chmod again in case of an unusual umask-less platform.
        os.chmod(temp_name, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yaml.safe_dump(settings, handle, default_flow_style=False, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


@click.group()
def auth() -> None:
    """Manage the credentials stored in ~/.tilde/config.yaml."""


@auth.command()
@click.option(
    "--api-key",
    prompt="API key",
    hide_input=True,
    help="The API key to store (prompted for, without echo, when omitted).",
)
@click.option("--endpoint-url", default=None, help="The server's root URL, e.g. http://127.0.0.1:8000.")
def login(api_key: str, endpoint_url: str | None) -> None:
    """Save an API key (and optionally an endpoint) for the SDK and CLI to use."""
    api_key = api_key.strip()
    if not api_key:
        raise click.BadParameter("the API key must not be empty", param_hint="--api-key")
    path = config_path()
    settings = _read_existing(path)
    settings["api_key"] = api_key
    if endpoint_url:
        settings["endpoint_url"] = endpoint_url.strip()
    _write_private(path, settings)
    click.echo(f"Saved credentials to {path}")


@auth.command()
def logout() -> None:
    """Remove the stored API key (other settings, such as the endpoint, are kept)."""
    path = config_path()
    settings = _read_existing(path)
    if "api_key" not in settings:
        click.echo("No stored API key.")
        return
    del settings["api_key"]
    _write_private(path, settings)
    click.echo(f"Removed the API key from {path}")
