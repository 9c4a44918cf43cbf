"""What every command shares: the client, argument types, JSON output and one-line errors.

The client, the argument types for locations and repositories, JSON output and the translation of errors
into one line.

Nothing here imports the SDK's data, compute or admin layers at module level: ``tilde --help`` must stay fast,
so they load the first time a command actually talks to a server.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, cast

import click

if TYPE_CHECKING:
    from tilde._composed import Client, Repository
    from tilde.data.urls import TildeURL

__all__ = [
    "LOCATION",
    "REPOSITORY",
    "CliState",
    "client",
    "describe_error",
    "emit_json",
    "fail",
    "info",
    "repository",
    "state",
    "stderr_binary",
    "stderr_is_terminal",
    "stdout_binary",
]


@dataclass
class CliState:
    """Per-run settings of the command line, kept as the click context's ``obj``.

    Attributes:
        debug: Show tracebacks instead of one-line errors.
        client: The API client, made on first use and closed when the run ends.

    """

    debug: bool = False
    client: Client | None = field(default=None, repr=False)


def state(ctx: click.Context | None = None) -> CliState:
    """Return the run's `CliState` (creating it for commands invoked without the top-level group).

    Args:
        ctx: The click context (default: the current one).

    Returns:
        The state stored on the root context.

    """
    root = (ctx or click.get_current_context()).find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def client() -> Client:
    """Return the run's API client (settings from the environment and ``~/.tilde/config.yaml``).

    Returns:
        The client; it is closed when the command ends.

    """
    ctx = click.get_current_context()
    current = state(ctx)
    if current.client is None:
        from tilde._composed import Client

        made = Client()
        current.client = made
        ctx.find_root().call_on_close(made.close)
    return current.client


def repository(org_repo: tuple[str, str]) -> Repository:
    """Return a handle on a repository given as ``(org, repo)``.

    Args:
        org_repo: The parsed ``ORG/REPO`` argument.

    Returns:
        The repository handle (no request is made).

    """
    org, repo = org_repo
    return client().repository(f"{org}/{repo}")


if TYPE_CHECKING:
    _ParamType = click.ParamType[Any]
else:
    # Recent click makes ParamType generic for type checkers only; older releases cannot be subscripted.
    _ParamType = click.ParamType


class _LocationType(_ParamType):
    """A ``tilde://ORG/REPO[@REF]/PATH`` argument, parsed into a `tilde.data.urls.TildeURL`."""

    name = "tilde://ORG/REPO[@REF]/PATH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> TildeURL:
        from tilde.data.urls import TildeURL, parse_url

        if isinstance(value, TildeURL):
            return value
        try:
            url = parse_url(str(value))
            _check_names(url.org, url.repo)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return url


class _RepositoryType(_ParamType):
    """An ``ORG/REPO`` argument, parsed into ``(org, repo)``."""

    name = "ORG/REPO"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        from tilde.data.urls import parse_repo_path

        try:
            org, repo = parse_repo_path(str(value))
            _check_names(org, repo)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return org, repo


def _check_names(org: str, repo: str) -> None:
    # The server's own name rules, checked before any request: one line naming the part that is wrong (a
    # malformed argument, by contrast, is a usage error with the usage line).
    from tilde.core.names import check_org, check_repository

    try:
        check_org(org)
        check_repository(repo)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


#: Click type of ``tilde://`` arguments.
LOCATION = _LocationType()
#: Click type of ``ORG/REPO`` arguments.
REPOSITORY = _RepositoryType()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit_json(rows: Iterable[Mapping[str, Any]]) -> None:
    """Print a JSON array of objects on stdout (one document, indented for people, stable for scripts).

    Args:
        rows: The objects; datetimes become ISO 8601 strings.

    """
    click.echo(json.dumps([dict(row) for row in rows], indent=2, default=_jsonable, ensure_ascii=False))


def fail(message: str) -> NoReturn:
    """Stop the command with a one-line error on stderr and exit status 1.

    Args:
        message: What went wrong.

    Raises:
        click.ClickException: Always.

    """
    raise click.ClickException(message)


def info(message: str) -> None:
    """Print a status line on stderr (stdout stays for data, so pipes and ``--json`` stay clean).

    Args:
        message: The line.

    """
    click.echo(message, err=True)


def describe_error(exc: BaseException) -> str | None:
    """Turn an SDK, network or file error into one line for people; None for anything unexpected.

    Args:
        exc: The exception a command raised.

    Returns:
        The message, without the ``Error:`` prefix click adds.

    """
    from tilde.core.errors import (
        APIError,
        AuthenticationError,
        ForbiddenError,
        NotFoundError,
        TildeError,
        TransportError,
    )

    if isinstance(exc, AuthenticationError):
        return "the server refused the API key (401): run `tilde auth login` or set TILDE_API_KEY"
    if isinstance(exc, ForbiddenError):
        return f"permission denied (403): {exc.message or 'the API key may not do this'}"
    if isinstance(exc, NotFoundError):
        return f"not found (404): {exc.message or 'no such resource'}"
    if isinstance(exc, APIError):
        detail = exc.message or exc.response_text[:200] or "no details"
        return f"{detail} (HTTP {exc.status_code})"
    if isinstance(exc, TransportError):
        endpoint = ""
        current = click.get_current_context(silent=True)
        made = state(current).client if current is not None else None
        if made is not None:
            endpoint = f" {made._config.endpoint_url}"
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        return f"cannot reach the server{endpoint} ({reason})"
    if isinstance(exc, TildeError):
        return str(exc)
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename} is a directory (use -r to copy folders)"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, OSError):
        return str(exc)
    if isinstance(exc, ValueError):
        return str(exc)
    return None


def stdout_binary() -> BinaryIO:
    """Return the binary side of the current ``sys.stdout`` (looked up per call: test runners swap it)."""
    return _binary(sys.stdout)


def stderr_binary() -> BinaryIO:
    """Return the binary side of the current ``sys.stderr``."""
    return _binary(sys.stderr)


def _binary(stream: Any) -> BinaryIO:
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        raise click.ClickException("this output stream cannot take binary data")
    return cast("BinaryIO", buffer)


def stderr_is_terminal() -> bool:
    """Whether stderr is an interactive terminal (progress bars go there only then)."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())
