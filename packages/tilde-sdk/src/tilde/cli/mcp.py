"""``tilde mcp``: serve Tilde's tools to agents over the Model Context Protocol (see `tilde.mcp`)."""

from __future__ import annotations

import click

from tilde.cli._runtime import REPOSITORY, client, info

__all__ = ["mcp"]


@click.command("mcp")
@click.option(
    "--repo",
    "repos",
    type=REPOSITORY,
    multiple=True,
    metavar="ORG/REPO",
    help="Expose only this repository (repeatable; default: every repository the API key can see).",
)
@click.option(
    "--read-only", is_flag=True, help="Offer only reading tools: no sessions, sandboxes or reverts."
)
@click.option(
    "--http",
    "port",
    type=click.IntRange(min=1, max=65535),
    default=None,
    metavar="PORT",
    help="Serve streamable HTTP on this port (at /mcp) instead of stdio.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address --http listens on.")
def mcp(repos: tuple[tuple[str, str], ...], read_only: bool, port: int | None, host: str) -> None:
    """Run an MCP server that gives agents Tilde's tools, with this machine's credentials.

    Agents list and read objects, stage changes in a session and commit them atomically (or roll back), run
    commands in sandboxes and revert commits. Speaks stdio (what desktop clients launch) unless --http.
    Needs the mcp extra: pip install 'tilde-sdk[mcp]'.

    \b
    Examples:
      tilde mcp
      tilde mcp --repo acme/data --read-only
      tilde mcp --http 8765
    """  # noqa: D301 - click keeps lines after \b as written
    try:
        from tilde.mcp import ServerOptions, run_server
    except ImportError as exc:
        raise click.ClickException(
            f"the MCP server needs the mcp package ({exc}): pip install 'tilde-sdk[mcp]'"
        ) from exc
    names = tuple(dict.fromkeys(f"{org}/{name}" for org, name in repos))
    options = ServerOptions(repositories=names, read_only=read_only)
    if port is not None:
        info(f"Serving MCP over streamable HTTP at http://{host}:{port}/mcp")
    run_server(client(), options, port=port, host=host)
