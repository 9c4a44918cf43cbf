"""Transactional writing tools: sessions (open, put, copy, delete, show, commit, roll back) and revert."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from tilde.mcp._context import ToolContext, api_errors
from tilde.mcp._json import record_json

__all__ = ["register_write_tools"]

_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

SessionId = Annotated[str, Field(description="The id open_session returned.")]
Path = Annotated[str, Field(description="The object's path, e.g. data/train.csv (no leading /).")]


def register_write_tools(server: MCPServer[Any], ctx: ToolContext) -> None:
    """Add the session tools and ``revert_commit`` to ``server``.

    Args:
        server: The MCP server.
        ctx: The shared state.

    """

    @server.tool(annotations=_WRITE)
    def open_session(
        repository: Annotated[str, Field(description="The repository as ORG/REPO, e.g. acme/data.")],
    ) -> dict[str, Any]:
        """Open a session: a private workspace where puts, copies and deletes are staged.

        Nothing is visible to others until commit_session commits every staged change at once;
        rollback_session discards them all. Returns the session_id the other session tools take.
        """
        repo = ctx.repository(repository)
        with api_errors():
            session = repo.session()
        ctx.add_session(session)
        return {"session_id": session.id, "repository": f"{repo.org}/{repo.name}"}

    @server.tool(annotations=_WRITE)
    def put_object(
        session_id: SessionId,
        path: Path,
        content: Annotated[
            str, Field(description="The object's content: text, or base64 with encoding=base64.")
        ],
        encoding: Annotated[
            Literal["utf-8", "base64"], Field(description="How content is encoded.")
        ] = "utf-8",
        content_type: Annotated[str, Field(description="The object's media type.")] = "text/plain",
    ) -> dict[str, Any]:
        """Stage an object's new content in a session (it is written when the session commits)."""
        session = ctx.session(session_id)
        if encoding == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except binascii.Error as exc:
                raise ToolError(f"content is not valid base64: {exc}") from exc
        else:
            data = content.encode("utf-8")
        with api_errors():
            result = session.objects.put(path, data, content_type=content_type)
        return {"path": result.path or path, "size": len(data), "staged": True}

    @server.tool(annotations=_WRITE)
    def copy_object(
        session_id: SessionId,
        source_path: Annotated[str, Field(description="The object to copy.")],
        destination_path: Annotated[str, Field(description="Where the copy goes.")],
    ) -> dict[str, Any]:
        """Stage a server-side copy of an object in a session (no bytes travel)."""
        session = ctx.session(session_id)
        with api_errors():
            result = session.objects.copy(source_path, destination_path)
        return {
            "source_path": result.source_path,
            "destination_path": result.destination_path,
            "staged": True,
        }

    @server.tool(annotations=_WRITE)
    def delete_object(session_id: SessionId, path: Path) -> dict[str, Any]:
        """Stage the deletion of an object in a session (it disappears when the session commits)."""
        session = ctx.session(session_id)
        with api_errors():
            session.objects.delete(path)
        return {"path": path, "staged": True}

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    def show_changes(session_id: SessionId) -> dict[str, Any]:
        """List a session's staged, uncommitted changes (each path with change put or delete)."""
        session = ctx.session(session_id)
        with api_errors():
            return {"session_id": session_id, "changes": [record_json(r) for r in session.uncommitted()]}

    @server.tool(annotations=_WRITE)
    def commit_session(
        session_id: SessionId,
        message: Annotated[str, Field(description="The commit message: what changed and why.", min_length=1)],
    ) -> dict[str, Any]:
        """Commit every staged change of a session atomically and close it.

        Returns status "committed" with the commit_id, or status "awaiting_approval" with the URL where a
        person must approve it (the changes are not yet visible then). A conflict with another commit applies
        nothing.
        """
        session = ctx.session(session_id)
        with api_errors():
            result = session.commit_result(message)
        ctx.forget_session(session_id)
        if result.status == "approval_required":
            return {
                "status": "awaiting_approval",
                "web_url": result.web_url,
                "note": f"The commit awaits approval at {result.web_url}; it is not applied yet.",
            }
        return {"status": "committed", "commit_id": result.commit_id}

    @server.tool(annotations=_DESTRUCTIVE)
    def rollback_session(session_id: SessionId) -> dict[str, Any]:
        """Discard every staged change of a session and close it."""
        session = ctx.session(session_id)
        with api_errors():
            session.rollback()
        ctx.forget_session(session_id)
        return {"session_id": session_id, "status": "rolled_back"}

    @server.tool(annotations=_WRITE)
    def revert_commit(
        repository: Annotated[str, Field(description="The repository as ORG/REPO.")],
        commit_id: Annotated[str, Field(description="The commit to undo.")],
        message: Annotated[
            str | None, Field(description='The new commit\'s message (default: Revert "...").')
        ] = None,
    ) -> dict[str, Any]:
        """Make a new commit that undoes an earlier one (history is kept; nothing is rewritten)."""
        from tilde.data import Commit

        repo = ctx.repository(repository)
        with api_errors():
            new = Commit(ctx.client, repo.org, repo.name, id=commit_id).revert(message=message)
        return {"status": "committed", "commit_id": new.id, "reverted": commit_id}
