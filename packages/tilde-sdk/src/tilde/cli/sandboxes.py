"""``tilde sandbox``: list a repository's sandboxes, read their logs and cancel them."""

from __future__ import annotations

from typing import Any

import click

from tilde.cli._runtime import REPOSITORY, client, emit_json, info, repository, stdout_binary

__all__ = ["sandbox", "sandbox_fields"]

#: Without --follow, a running sandbox's log is read until it goes quiet for this long (what exists so far).
_IDLE_SECONDS = 1.0


def sandbox_fields(item: dict[str, Any]) -> dict[str, Any]:
    """Return the ``--json`` form of a sandbox: its id, the fields of the SDK's `SandboxStatus`, its image.

    Environment variables are left out on purpose: they may hold secrets.

    Args:
        item: A Sandbox object from the listing.

    Returns:
        ``id``, ``state``, ``status_reason``, ``exit_code``, ``commit_id``, ``image``, ``mode``,
        ``created_at``.

    """
    return {
        "id": item.get("id", ""),
        "state": item.get("status", ""),
        "status_reason": item.get("status_reason") or "",
        "exit_code": item.get("exit_code"),
        "commit_id": item.get("commit_id") or None,
        "image": item.get("image", ""),
        "mode": item.get("mode", ""),
        "created_at": item.get("created_at"),
    }


@click.group()
def sandbox() -> None:
    """List sandboxes, read their logs, cancel them.

    \b
    Examples:
      tilde sandbox list acme/data
      tilde sandbox logs acme/data 0b7c… --follow
      tilde sandbox cancel acme/data 0b7c…
    """  # noqa: D301 - click keeps lines after \b as written


@sandbox.command("list")
@click.argument("repo", type=REPOSITORY, metavar="ORG/REPO")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (id, state, status_reason …).")
def list_sandboxes(repo: tuple[str, str], as_json: bool) -> None:
    """List a repository's sandboxes.

    \b
    Examples:
      tilde sandbox list acme/data
      tilde sandbox list acme/data --json
    """  # noqa: D301 - click keeps lines after \b as written
    rows = list(client()._paginate(f"{repository(repo)._path}/sandboxes", sandbox_fields))
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        reason = f"/{row['status_reason']}" if row["status_reason"] else ""
        click.echo(f"{row['id']}  {row['state']}{reason}  {row['image']}  {row['created_at'] or ''}")


@sandbox.command()
@click.argument("repo", type=REPOSITORY, metavar="ORG/REPO")
@click.argument("sandbox_id", metavar="ID")
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the sandbox ends.")
def logs(repo: tuple[str, str], sandbox_id: str, follow: bool) -> None:
    """Print a sandbox's output (stdout and stderr merged).

    \b
    Examples:
      tilde sandbox logs acme/data 0b7c…
      tilde sandbox logs acme/data 0b7c… --follow
    """  # noqa: D301 - click keeps lines after \b as written
    import httpx

    from tilde.core.errors import TransportError, api_error_for_status

    handle = repository(repo).sandboxes.get(sandbox_id)
    active = handle.status().is_active  # also reports an unknown repository or sandbox in one line
    out = stdout_binary()
    api = client()
    url = api._config.base_url + handle._path + "/logs/stdout"
    # The server streams the log live while the sandbox runs: --follow waits as long as it takes; otherwise a
    # running sandbox's log is read until it goes quiet (what exists so far).
    read = None if follow or not active else _IDLE_SECONDS
    try:
        with api._http.stream(
            "GET", url, headers=api._auth_headers(), timeout=httpx.Timeout(30.0, read=read)
        ) as response:
            if response.status_code >= 400:
                body = response.read().decode("utf-8", "replace")
                raise api_error_for_status(
                    response.status_code, message=_message(body), method="GET", url=url, response_text=body
                )
            for chunk in response.iter_bytes():
                out.write(chunk)
                out.flush()
    except httpx.ReadTimeout:
        if read is None:
            raise
    except httpx.TransportError as exc:
        raise TransportError(f"GET {url} failed: {exc!r}", cause=exc) from exc


def _message(body: str) -> str:
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    return str(data.get("message", "")) if isinstance(data, dict) else body[:200]


@sandbox.command()
@click.argument("repo", type=REPOSITORY, metavar="ORG/REPO")
@click.argument("sandbox_id", metavar="ID")
def cancel(repo: tuple[str, str], sandbox_id: str) -> None:
    """Stop a sandbox and discard its changes.

    \b
    Example:
      tilde sandbox cancel acme/data 0b7c…
    """  # noqa: D301 - click keeps lines after \b as written
    repository(repo).sandboxes.get(sandbox_id).cancel()
    info(f"Cancelled sandbox {sandbox_id}; its changes were discarded.")
