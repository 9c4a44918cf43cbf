"""``tilde mcp``: a Model Context Protocol server that gives agents Tilde's transactional tools.

Agents (any MCP client) list, read and diff versioned objects, stage writes in a session that commits
atomically or rolls back, run commands in sandboxes and revert commits — all with the caller's own API key,
so the server never does more than that key may do.

It ships inside ``tilde-sdk`` behind the ``mcp`` extra (``pip install 'tilde-sdk[mcp]'``) rather than as a
seventh distribution: it composes data and compute exactly as the SDK facade and the CLI already do, it is
started through the ``tilde`` command, and the release pipeline builds exactly six wheels — a separate
``tilde-mcp`` would add a wheel, a version and a test matrix for what is one command and a few modules. A
slim install stays slim: nothing here is imported until ``tilde mcp`` runs.
"""

from tilde.mcp.server import ServerOptions, build_server, run_server

__all__ = ["ServerOptions", "build_server", "run_server"]
