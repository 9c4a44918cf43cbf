"""The ``tilde`` command line."""

import click


@click.group()
def main() -> None:
    """Work with Tilde from the command line."""
