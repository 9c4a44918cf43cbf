"""The ``tilde`` command line.

One module per command group: `tilde.cli.auth`, `tilde.cli.orgs`, `tilde.cli.repos`, `tilde.cli.objects`
(``ls``, ``cat``, ``rm``), `tilde.cli.copy` (``cp``), `tilde.cli.history` (``log``, ``diff``, ``revert``),
`tilde.cli.compute` (``exec``, ``shell``), `tilde.cli.sandboxes` and `tilde.cli.server`. Plugins add their
own through the `tilde.cli.hookspecs.tilde_register_commands` hook.

Errors are one line on stderr with a non-zero exit status; ``tilde --debug …`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import pluggy

from tilde._version import __version__
from tilde.cli import hookspecs
from tilde.cli._runtime import describe_error, state
from tilde.cli.auth import auth
from tilde.cli.compute import exec_command, shell
from tilde.cli.copy import cp
from tilde.cli.history import diff, log, revert
from tilde.cli.mcp import mcp
from tilde.cli.objects import cat, ls, rm
from tilde.cli.orgs import org
from tilde.cli.repos import repo
from tilde.cli.sandboxes import sandbox
from tilde.cli.server import server
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
    """The top-level group: loads plugin commands on first lookup and turns errors into one line."""

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

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; SDK, network and file errors become ``Error: <one line>`` unless ``--debug``."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`tilde cat … | head`): stop quietly, as other command-line tools do.
            _silence_stdout()
            raise click.exceptions.Exit(141) from None
        except Exception as exc:
            if state(ctx).debug:
                raise
            message = describe_error(exc)
            if message is None:
                message = f"unexpected {type(exc).__name__}: {exc} (run `tilde --debug …` for the traceback)"
            raise click.ClickException(message) from exc


def _silence_stdout() -> None:
    # Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again.
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fileno)
    finally:
        os.close(devnull)


@click.group(cls=TildeGroup)
@click.version_option(__version__, "--version", "-V", prog_name="tilde")
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Work with Tilde from the command line: repositories, objects, history and sandboxes.

    Remote locations are written tilde://ORG/REPO[@REF]/PATH, repositories ORG/REPO. Credentials come from
    TILDE_API_KEY / TILDE_ENDPOINT_URL or ~/.tilde/config.yaml (see `tilde auth login`).

    \b
    Examples:
      tilde auth login --endpoint-url http://127.0.0.1:8000
      tilde ls tilde://acme/data/
      tilde cp -r ./images tilde://acme/data/images -m "add images"
    """  # noqa: D301 - click keeps lines after \b as written
    state(ctx).debug = debug


for _command in (auth, org, repo, ls, cat, cp, rm, log, diff, revert, exec_command, shell, sandbox, server):
    main.add_command(_command)
main.add_command(mcp)
