"""The hook through which plugins add commands to the ``tilde`` command line.

Example:
    A plugin module adding ``tilde hello``::

        import click
        from tilde.cli.hookspecs import hookimpl

        @hookimpl
        def tilde_register_commands(cli):
            @cli.command()
            def hello():
                click.echo("hello")

"""

from __future__ import annotations

import click
import pluggy

from tilde.core.hookspecs import PROJECT_NAME

__all__ = ["hookimpl", "hookspec", "tilde_register_commands"]

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def tilde_register_commands(cli: click.Group) -> None:
    """Add commands (or command groups) to the ``tilde`` command line.

    Called once per run of ``tilde``, before the arguments are parsed, on every registered plugin (not
    ``firstresult``; return values are ignored). Plugins load from the ``tilde_sdk.plugins`` entry-point
    group, limited by ``TILDE_PLUGINS``. A command whose name is already taken replaces the earlier one, so
    plugins should pick distinctive names.

    Args:
        cli: The top-level ``tilde`` group; call ``cli.command()`` / ``cli.add_command(...)`` on it.

    """
