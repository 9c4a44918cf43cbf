"""``tilde server …``: the local server's command line (``tilde-server``), when it is installed."""

from __future__ import annotations

import click

from tilde.cli._runtime import fail

__all__ = ["server"]


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def server(args: tuple[str, ...]) -> None:
    """Run the local Tilde server's commands (the same as `tilde-server …`; needs tilde-server installed).

    \b
    Examples:
      tilde server serve --port 8000 --data-dir ./tilde-data
      tilde server user create alice
      tilde server --help
    """  # noqa: D301 - click keeps lines after \b as written
    try:
        from tilde.server.cli import main as server_main
    except ImportError:
        fail("the local server is not installed: pip install tilde-server")
    # Its own group parses and reports its options; its exit status becomes ours.
    server_main.main(args=list(args), prog_name="tilde server")
