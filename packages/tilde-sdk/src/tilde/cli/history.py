"""``tilde log``, ``tilde diff`` and ``tilde revert``: a repository's history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from tilde.cli._runtime import REPOSITORY, client, emit_json, fail, repository
from tilde.cli._sessions import entry_fields

if TYPE_CHECKING:
    from tilde.data import Commit

__all__ = ["commit_fields", "diff", "log", "revert"]

_STATUS_MARKS = {"added": "+", "removed": "-", "modified": "~"}


def commit_fields(commit: Commit) -> dict[str, Any]:
    """Return the ``--json`` form of a commit (the SDK model's field names).

    Args:
        commit: A loaded commit.

    Returns:
        The commit's attributes.

    """
    return {
        "id": commit.id,
        "message": commit.message,
        "committer": commit.committer,
        "committer_type": commit.committer_type,
        "committer_id": commit.committer_id,
        "creation_date": commit.creation_date,
        "parents": commit.parents,
        "metadata": commit.metadata,
        "meta_range_id": commit.meta_range_id,
        "object_count": commit.object_count,
        "total_size": commit.total_size,
    }


@click.command()
@click.argument("repo", type=REPOSITORY, metavar="ORG/REPO")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=1), default=None, help="Show at most N.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (fields of the SDK's Commit).")
def log(repo: tuple[str, str], limit: int | None, as_json: bool) -> None:
    """Show the commit history, newest first.

    \b
    Examples:
      tilde log acme/data
      tilde log acme/data -n 5 --json
    """  # noqa: D301 - click keeps lines after \b as written
    rows = [commit_fields(c) for c in repository(repo).commits.list(amount=limit)]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        when = row["creation_date"].strftime("%Y-%m-%d %H:%M:%S") if row["creation_date"] else ""
        first_line = (row["message"] or "").splitlines()[0] if row["message"] else ""
        click.echo(f"{row['id']}  {when}  {row['committer']}  {first_line}")


def _latest(repo: tuple[str, str]) -> str:
    latest = next(iter(repository(repo).commits.list(amount=1)), None)
    if latest is None:
        fail(f"{repo[0]}/{repo[1]} has no commits yet")
    return latest.id


@click.command()
@click.argument("repo", type=REPOSITORY, metavar="ORG/REPO")
@click.argument("from_ref", metavar="FROM")
@click.argument("to_ref", metavar="[TO]", required=False)
@click.option("--prefix", default=None, help="Only paths starting with this.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (path, type, status, size …).")
def diff(repo: tuple[str, str], from_ref: str, to_ref: str | None, prefix: str | None, as_json: bool) -> None:
    """Show what changed between two commits (TO defaults to the latest commit).

    Lines start with + (added), ~ (modified) or - (removed).

    \b
    Examples:
      tilde diff acme/data 3f2a9c
      tilde diff acme/data 3f2a9c 7b1e04 --json
    """  # noqa: D301 - click keeps lines after \b as written
    from tilde.data import ListingEntry

    right = to_ref or _latest(repo)
    params: dict[str, Any] = {"left": from_ref, "right": right}
    if prefix:
        params["prefix"] = prefix
    entries = client()._paginate(f"{repository(repo)._path}/diff", ListingEntry.from_dict, params=params)
    rows = [entry_fields(e) for e in entries]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{_STATUS_MARKS.get(row.get('status') or '', '?')} {row['path']}")


@click.command()
@click.argument("repo", type=REPOSITORY, metavar="ORG/REPO")
@click.argument("commit_id", metavar="COMMIT")
@click.option("-m", "--message", default=None, help='The new commit\'s message (default: Revert "…").')
def revert(repo: tuple[str, str], commit_id: str, message: str | None) -> None:
    """Make a new commit that undoes COMMIT.

    \b
    Example:
      tilde revert acme/data 3f2a9c -m "undo the bad import"
    """  # noqa: D301 - click keeps lines after \b as written
    org, name = repo
    from tilde.data import Commit

    new = Commit(client(), org, name, id=commit_id).revert(message=message)
    click.echo(new.id)
    click.echo(f"Reverted {commit_id} in commit {new.id}", err=True)
