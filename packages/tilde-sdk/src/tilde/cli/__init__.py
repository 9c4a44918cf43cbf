"""The ``tilde`` command line.

Built-in commands: ``tilde --version`` and ``tilde auth login|logout``. Plugins add their own through the
`tilde.cli.hookspecs.tilde_register_commands` hook.
"""

from __future__ import annotations

from typing import Any

import click
import pluggy

from tilde._version import __version__
from tilde.cli import hookspecs
from tilde.cli.auth import auth
from tilde.core.errors import TildeError

__all__ = ["TildeGroup", "load_plugin_commands", "main"]


def load_plugin_commands(cli: click.Group, manager: pluggy.PluginManager | None = None) -> None:
    """Let plugins add their commands to ``cli``.

    Args:
        cli: The group to add commands to.
        manager: The plugin manager to ask; by default a fresh one with the installed plugins (restricted by
            ``TILDE_PLUGINS``).

    """
    if manager is None:
        from tilde.core.plugins import make_plugin_manager

        manager = make_plugin_manager(extra_hookspecs=[hookspecs])
    else:
        caller = getattr(manager.hook, "tilde_register_commands", None)
        if caller is None or caller.spec is None:
            manager.add_hookspecs(hookspecs)
    manager.hook.tilde_register_commands(cli=cli)


class TildeGroup(click.Group):
    """The top-level group: loads plugin commands the first time a command is looked up or listed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins_loaded = False

    def _load_plugins(self) -> None:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            try:
                load_plugin_commands(self)
            except TildeError as exc:
                # A broken plugin is a usage problem to report in one line, not a traceback.
                raise click.ClickException(str(exc)) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        """List the built-in and plugin commands."""
        self._load_plugins()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Find a built-in or plugin command by name."""
        self._load_plugins()
        return super().get_command(ctx, cmd_name)


@click.group(cls=TildeGroup)
@click.version_option(__version__, "--version", "-V", prog_name="tilde")
def main() -> None:
    """Work with Tilde from the command line."""


main.add_command(auth)
