"""Sandbox tools: ``execute`` (one command, committed when it succeeds) and a multi-step shell."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from tilde.mcp._context import ToolContext, api_errors

if TYPE_CHECKING:
    from tilde.compute import SandboxStatus

__all__ = ["register_compute_tools"]

#: Output beyond this many bytes is cut (from the start: the end of a log says most).
MAX_OUTPUT_BYTES = 64 * 1024
#: How long to wait for a sandbox's end (beyond the command's own timeout).
_WAIT_SECONDS = 300.0
_RUN = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

Image = Annotated[
    str | None, Field(description="The sandbox image, e.g. python:3.12; omit for the server's default.")
]
Env = Annotated[dict[str, str] | None, Field(description="Environment variables of the sandbox.")]
SandboxId = Annotated[str, Field(description="The sandbox_id shell_start returned.")]


def _text(data: bytes) -> dict[str, Any]:
    cut = len(data) > MAX_OUTPUT_BYTES
    kept = data[-MAX_OUTPUT_BYTES:] if cut else data
    return {"text": kept.decode("utf-8", errors="replace"), "truncated": cut}


def outcome(status: SandboxStatus) -> dict[str, Any]:
    """Describe where a finished sandbox's changes went.

    Args:
        status: The sandbox's final status.

    Returns:
        ``outcome`` (committed, no_changes, awaiting_approval or rolled_back) with ``commit_id``,
        ``web_url`` or ``reason``.

    """
    if status.is_committed:
        return {"outcome": "committed", "commit_id": status.commit_id}
    if status.has_no_changes:
        return {"outcome": "no_changes", "commit_id": None}
    if status.is_awaiting_approval:
        return {
            "outcome": "awaiting_approval",
            "commit_id": None,
            "web_url": status.web_url,
            "note": f"The changes await approval at {status.web_url}; they are not applied yet.",
        }
    reason = f"{status.state}/{status.status_reason}"
    if status.error_message:
        reason += f": {status.error_message}"
    return {"outcome": "rolled_back", "commit_id": None, "reason": reason}


def register_compute_tools(server: MCPServer[Any], ctx: ToolContext) -> None:
    """Add ``execute`` and the ``shell_*`` tools to ``server``.

    Args:
        server: The MCP server.
        ctx: The shared state.

    """

    @server.tool(annotations=_RUN)
    def execute(
        repository: Annotated[
            str, Field(description="The repository as ORG/REPO; it is mounted at /sandbox.")
        ],
        command: Annotated[str, Field(description="A shell command line, run with sh -c in the sandbox.")],
        image: Image = None,
        env: Env = None,
        timeout: Annotated[
            int | None, Field(description="Stop the command after this many seconds.", ge=1, le=86400)
        ] = None,
    ) -> dict[str, Any]:
        """Run one command in a new sandbox on the repository (mounted at /sandbox) and wait for it.

        If the command exits 0 its file changes under /sandbox are committed (outcome committed with
        commit_id, no_changes, or awaiting_approval with a URL); otherwise they are rolled back. Returns the
        output (stdout and stderr merged) and the exit code.
        """
        from tilde.compute import Sandboxes

        repo = ctx.repository(repository)
        with api_errors():
            sandbox = Sandboxes(ctx.client, repo.org, repo.name).create(
                image=image or ctx.client._config.default_sandbox_image,
                command=command,
                env=env,
                timeout_seconds=timeout,
            )
            limit = _WAIT_SECONDS if timeout is None else max(_WAIT_SECONDS, timeout + 60.0)
            status = sandbox.wait(timeout=limit)
            try:
                with status.stdout() as log:
                    output = log.read()
            except Exception:
                output = b""  # the output is a courtesy: its absence must not hide the outcome
        code = status.exit_code
        if code is None:
            code = 0 if status.state == "done" else -1
        return {"sandbox_id": sandbox.id, "exit_code": code, "output": _text(output), **outcome(status)}

    @server.tool(annotations=_RUN)
    def shell_start(
        repository: Annotated[
            str, Field(description="The repository as ORG/REPO; it is mounted at /sandbox.")
        ],
        image: Image = None,
        env: Env = None,
    ) -> dict[str, Any]:
        """Start a sandbox on the repository (mounted at /sandbox) for several commands in a row.

        Run commands with shell_run; shell_finish commits what they changed, shell_cancel discards it.
        Returns the sandbox_id.
        """
        repo = ctx.repository(repository)
        with api_errors():
            sh = repo.shell(image=image, env=env)
            try:
                sh.wait_until_running()
            except BaseException:
                sh.cancel()
                raise
        ctx.add_shell(sh)
        return {"sandbox_id": sh.sandbox_id, "mountpoint": "/sandbox"}

    @server.tool(annotations=_RUN)
    def shell_run(
        sandbox_id: SandboxId,
        command: Annotated[str, Field(description="A shell command line, run with sh -c.")],
        cwd: Annotated[str | None, Field(description="The working directory (default /sandbox).")] = None,
        stdin: Annotated[str | None, Field(description="Text fed to the command's standard input.")] = None,
        timeout: Annotated[
            int | None, Field(description="Stop the command after this many seconds (exit code 124).", ge=1)
        ] = None,
    ) -> dict[str, Any]:
        """Run a command in a started shell's sandbox and return its stdout, stderr and exit code."""
        sh = ctx.shell(sandbox_id)
        with api_errors():
            result = sh.run(command, cwd=cwd, stdin=stdin, timeout=timeout)
        return {
            "exit_code": result.exit_code,
            "stdout": _text(result.stdout.read()),
            "stderr": _text(result.stderr.read()),
        }

    @server.tool(annotations=_RUN)
    def shell_finish(sandbox_id: SandboxId) -> dict[str, Any]:
        """End a shell and commit what its commands changed (committed, no_changes or awaiting_approval)."""
        sh = ctx.shell(sandbox_id)
        with api_errors():
            sh.finish()
            status = sh.sandbox.wait(timeout=_WAIT_SECONDS)
        ctx.forget_shell(sandbox_id)
        return {"sandbox_id": sandbox_id, **outcome(status)}

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
    )
    def shell_cancel(sandbox_id: SandboxId) -> dict[str, Any]:
        """End a shell and discard everything its commands changed."""
        sh = ctx.shell(sandbox_id)
        with api_errors():
            sh.cancel()
        ctx.forget_shell(sandbox_id)
        return {"sandbox_id": sandbox_id, "outcome": "rolled_back"}
