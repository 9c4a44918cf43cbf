"""Build and run the MCP server: the tools and resources over one API client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer

from tilde._version import __version__
from tilde.mcp._compute_tools import register_compute_tools
from tilde.mcp._context import ToolContext
from tilde.mcp._read_tools import register_read_tools
from tilde.mcp._resources import register_resources
from tilde.mcp._write_tools import register_write_tools

if TYPE_CHECKING:
    from tilde._composed import Client

__all__ = ["ServerOptions", "build_server", "run_server"]

_INSTRUCTIONS = """\
Tilde stores versioned objects in repositories (ORG/REPO) and runs commands in sandboxes over them.
Read with list_repositories, list_objects, read_object, log and diff. To change objects, open_session, stage
put_object / copy_object / delete_object, check show_changes, then commit_session with a message
(or rollback_session): the changes land in one commit or not at all. execute runs one command in a sandbox
with the repository at /sandbox and commits its changes when it exits 0; shell_start / shell_run /
shell_finish or shell_cancel do the same over several commands. A commit that needs a person's approval
comes back as awaiting_approval with the URL where to approve it. Objects are also resources: tilde://ORG/REPO@REF/PATH."""


@dataclass(frozen=True)
class ServerOptions:
    """What the server exposes.

    Attributes:
        repositories: ``ORG/REPO`` names to expose; empty for every repository the API key can see.
        read_only: Offer only the reading tools (no sessions, sandboxes or reverts).

    """

    repositories: tuple[str, ...] = ()
    read_only: bool = False


def build_server(client: Client, options: ServerOptions | None = None) -> MCPServer[Any]:
    """Make the MCP server for ``client``.

    Args:
        client: The API client; the server does only what its key may do.
        options: What to expose (default: everything, read and write).

    Returns:
        The server, ready to ``run()`` over stdio or streamable HTTP.

    """
    return _build(client, options or ServerOptions())[0]


def run_server(
    client: Client, options: ServerOptions | None = None, *, port: int | None = None, host: str = "127.0.0.1"
) -> None:
    """Serve until the client goes away (stdio) or the process is stopped (HTTP), then cancel open shells.

    Args:
        client: The API client; the server does only what its key may do.
        options: What to expose (default: everything, read and write).
        port: Serve streamable HTTP on this port (at ``/mcp``); None for stdio.
        host: The address HTTP listens on.

    """
    server, ctx = _build(client, options or ServerOptions())
    try:
        if port is None:
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=port)
    finally:
        # A sandbox an agent left running would otherwise live on until its own timeout.
        ctx.close()


def _build(client: Client, options: ServerOptions) -> tuple[MCPServer[Any], ToolContext]:
    ctx = ToolContext(client=client, repositories=options.repositories, read_only=options.read_only)
    server: MCPServer[Any] = MCPServer(
        "tilde",
        title="Tilde",
        instructions=_INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
    )
    register_read_tools(server, ctx)
    register_resources(server, ctx)
    if not options.read_only:
        register_write_tools(server, ctx)
        register_compute_tools(server, ctx)
    return server, ctx
