"""Reading tools: repositories, listings, object contents, history and diffs."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from tilde.mcp._context import ToolContext, api_errors
from tilde.mcp._json import commit_json, entry_json

__all__ = ["MAX_READ_BYTES", "register_read_tools"]

#: The most bytes one ``read_object`` call returns (agents page through larger objects with ``offset``).
MAX_READ_BYTES = 1024 * 1024
_DEFAULT_READ_BYTES = 64 * 1024
_READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

Repo = Annotated[str, Field(description="The repository as ORG/REPO, e.g. acme/data.")]
Ref = Annotated[
    str | None, Field(description="A commit id to read at; omit for the latest commit.", default=None)
]


def register_read_tools(server: MCPServer[Any], ctx: ToolContext) -> None:
    """Add the reading tools to ``server``.

    Args:
        server: The MCP server.
        ctx: The shared state.

    """

    @server.tool(annotations=_READ)
    def list_repositories() -> dict[str, Any]:
        """List the repositories this server exposes (as ORG/REPO), with their descriptions."""
        with api_errors():
            if ctx.repositories:
                return {"repositories": [{"repository": name} for name in ctx.repositories]}
            from tilde.data import Repositories

            rows: list[dict[str, Any]] = []
            for org in ctx.client.organizations.list():
                for repo in Repositories(ctx.client, org.name).list():
                    rows.append({"repository": f"{org.name}/{repo.name}", "description": repo.description})
            return {"repositories": rows}

    @server.tool(annotations=_READ)
    def list_objects(
        repository: Repo,
        prefix: Annotated[str, Field(description="Only paths starting with this, e.g. data/.")] = "",
        recursive: Annotated[
            bool, Field(description="List everything under the prefix instead of one folder level.")
        ] = False,
        ref: Ref = None,
        session_id: Annotated[
            str | None, Field(description="List as this open session sees it (uncommitted changes included).")
        ] = None,
        limit: Annotated[int, Field(description="At most this many entries.", ge=1, le=10000)] = 1000,
    ) -> dict[str, Any]:
        """List objects and folders (type "prefix") in a repository at a commit or inside an open session."""
        objects = _objects(ctx, repository, ref, session_id)
        with api_errors():
            entries = objects.list(prefix=prefix or None, delimiter=None if recursive else "/", amount=limit)
            return {"entries": [entry_json(e) for e in entries]}

    @server.tool(annotations=_READ)
    def read_object(
        repository: Repo,
        path: Annotated[str, Field(description="The object's path, e.g. data/train.csv.")],
        ref: Ref = None,
        session_id: Annotated[
            str | None, Field(description="Read as this open session sees it (uncommitted changes included).")
        ] = None,
        offset: Annotated[int, Field(description="First byte to read.", ge=0)] = 0,
        max_bytes: Annotated[
            int, Field(description="Read at most this many bytes (up to 1 MiB).", ge=1, le=MAX_READ_BYTES)
        ] = _DEFAULT_READ_BYTES,
    ) -> dict[str, Any]:
        """Read an object's text (UTF-8), a byte range at a time.

        Returns the text, the object's size and whether more follows (`truncated`; read on with a larger
        offset). Binary objects are refused here: read them as the resource tilde://ORG/REPO@REF/PATH.
        """
        objects = _objects(ctx, repository, ref, session_id)
        with api_errors():
            size = objects.head(path).content_length
            if size is not None and offset >= size:
                data = b""
            else:
                with objects.get(path, cache=False, byte_range=(offset, offset + max_bytes - 1)) as reader:
                    data = reader.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut by the end of the range is not binary content: stop before it.
            if not (len(data) == max_bytes and exc.reason == "unexpected end of data"):
                raise ToolError(
                    f"{path} is not UTF-8 text; read it as the resource tilde://{repository}/{path}"
                ) from None
            data = data[: exc.start]
            text = data.decode("utf-8", errors="replace")
        end = offset + len(data)
        return {
            "path": path,
            "size": size,
            "offset": offset,
            "bytes": len(data),
            "truncated": size is not None and end < size,
            "text": text,
        }

    @server.tool(annotations=_READ)
    def log(
        repository: Repo,
        limit: Annotated[int, Field(description="At most this many commits.", ge=1, le=1000)] = 20,
    ) -> dict[str, Any]:
        """Show a repository's commits, newest first (id, message, committer, date, parents)."""
        repo = ctx.repository(repository)
        with api_errors():
            return {"commits": [commit_json(c) for c in repo.commits.list(amount=limit)]}

    @server.tool(annotations=_READ)
    def diff(
        repository: Repo,
        from_ref: Annotated[str, Field(description="The older commit id.")],
        to_ref: Annotated[str | None, Field(description="The newer commit id; omit for the latest.")] = None,
        prefix: Annotated[str, Field(description="Only paths starting with this.")] = "",
    ) -> dict[str, Any]:
        """List what changed between two commits: each path with status added, modified or removed."""
        from tilde.data import ListingEntry

        repo = ctx.repository(repository)
        with api_errors():
            right = to_ref
            if right is None:
                latest = next(iter(repo.commits.list(amount=1)), None)
                if latest is None:
                    raise ToolError(f"{repository} has no commits yet")
                right = latest.id
            params: dict[str, Any] = {"left": from_ref, "right": right}
            if prefix:
                params["prefix"] = prefix
            rows = ctx.client._paginate(f"{repo._path}/diff", ListingEntry.from_dict, params=params)
            return {"from": from_ref, "to": right, "changes": [entry_json(e) for e in rows]}


def _objects(ctx: ToolContext, repository: str, ref: str | None, session_id: str | None) -> Any:
    """Return the object view a read names: an open session's, or the repository's at ``ref``."""
    from tilde.data import ReadOnlyObjects

    repo = ctx.repository(repository)
    if session_id is not None:
        if ref is not None:
            raise ToolError("give either ref or session_id, not both")
        session = ctx.session(session_id)
        if (session._org, session._repo) != (repo.org, repo.name):
            raise ToolError(f"session {session_id} belongs to another repository")
        return session.objects
    return ReadOnlyObjects(ctx.client, repo.org, repo.name, ref=ref)
