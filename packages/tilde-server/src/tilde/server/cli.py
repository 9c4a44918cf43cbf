"""The ``tilde-server`` command: ``tilde-server serve [--host] [--port] [--data-dir] [--admin-key]``."""

from __future__ import annotations

from pathlib import Path

import click
import uvicorn

from tilde.server._tuning import tune_malloc
from tilde.server._version import __version__
from tilde.server.app import create_app
from tilde.server.config import ServerConfig, load_or_create_admin_key

DEFAULT_DATA_DIR = Path("~/.tilde/server")


@click.group()
@click.version_option(__version__, prog_name="tilde-server")
def main() -> None:
    """Run a local Tilde-compatible server."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8900, show_default=True, type=int, help="TCP port.")
@click.option(
    "--data-dir",
    envvar="TILDE_SERVER_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where repositories are stored (env TILDE_SERVER_DATA_DIR; default ~/.tilde/server).",
)
@click.option(
    "--admin-key",
    envvar="TILDE_SERVER_ADMIN_KEY",
    default=None,
    help="The admin API key (env TILDE_SERVER_ADMIN_KEY; default: generated once, kept in the data dir).",
)
def serve(host: str, port: int, data_dir: Path | None, admin_key: str | None) -> None:
    """Serve the Tilde API until interrupted."""
    tune_malloc()
    data_dir = (data_dir or DEFAULT_DATA_DIR).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    if not admin_key:
        admin_key, created = load_or_create_admin_key(data_dir)
        if created:
            click.echo(f"Generated admin API key (stored in {data_dir / 'admin_key'}, shown once):")
            click.echo(f"  {admin_key}")
    config = ServerConfig(data_dir=data_dir, host=host, port=port, admin_key=admin_key)
    app = create_app(config)
    click.echo(f"tilde-server {__version__} on http://{host}:{port} (data in {data_dir})")
    uvicorn.run(app, host=host, port=port, http="httptools", loop="asyncio", log_level="info")
