"""The ``tilde`` command line."""

from __future__ import annotations

import click

from tilde._version import __version__
from tilde.cli.auth import auth

__all__ = ["main"]


@click.group()
@click.version_option(__version__, "--version", "-V", prog_name="tilde")
def main() -> None:
    """Work with Tilde from the command line."""


main.add_command(auth)
