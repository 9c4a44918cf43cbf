"""Objects as MCP resources: ``tilde://ORG/REPO@REF/PATH`` (or ``tilde://ORG/REPO/PATH`` for the latest)."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

from tilde.mcp._context import ToolContext, describe

__all__ = ["MAX_RESOURCE_BYTES", "register_resources"]

#: The largest object served as a resource (read larger ones in ranges with ``read_object``).
MAX_RESOURCE_BYTES = 16 * 1024 * 1024


def register_resources(server: MCPServer[Any], ctx: ToolContext) -> None:
    """Add the object resource templates to ``server``.

    Args:
        server: The MCP server.
        ctx: The shared state.

    """

    @server.resource(
        "tilde://{org}/{repo}@{ref}/{+path}",
        name="object_at_ref",
        description="An object of a repository at a commit: text when it is UTF-8, otherwise bytes.",
    )
    def object_at_ref(org: str, repo: str, ref: str, path: str) -> str | bytes:
        return read(ctx, f"tilde://{org}/{repo}@{ref}/{path}")

    @server.resource(
        "tilde://{org}/{repo}/{+path}",
        name="object",
        description="An object of a repository at its latest commit: text when it is UTF-8, otherwise bytes.",
    )
    def latest_object(org: str, repo: str, path: str) -> str | bytes:
        return read(ctx, f"tilde://{org}/{repo}/{path}")


def read(ctx: ToolContext, url: str) -> str | bytes:
    """Read the object a ``tilde://`` URL names.

    Args:
        ctx: The shared state.
        url: ``tilde://ORG/REPO[@REF]/PATH``.

    Returns:
        The text when the object is UTF-8, otherwise its bytes.

    Raises:
        ResourceError: A malformed URL, a repository the server does not expose, an object too large, or the
            API's error.

    """
    from tilde.data import ReadOnlyObjects
    from tilde.data.urls import parse_url

    try:
        location = parse_url(url)
        repo = ctx.repository(f"{location.org}/{location.repo}")
    except (ValueError, ToolError) as exc:
        raise ResourceError(str(exc)) from exc
    if not location.path or location.is_prefix:
        raise ResourceError(f"{url} names a folder, not an object (list it with list_objects)")
    objects = ReadOnlyObjects(ctx.client, repo.org, repo.name, ref=location.ref)
    try:
        size = objects.head(location.path).content_length
        if size is not None and size > MAX_RESOURCE_BYTES:
            raise ResourceError(f"{url} is {size} bytes, over the {MAX_RESOURCE_BYTES}-byte resource limit")
        with objects.get(location.path, cache=False) as reader:
            data = reader.read()
    except ResourceError:
        raise
    except Exception as exc:
        raise ResourceError(describe(exc)) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data
