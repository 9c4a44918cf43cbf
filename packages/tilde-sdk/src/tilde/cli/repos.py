"""``tilde repo``: list, create and delete repositories."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from tilde.cli._runtime import REPOSITORY, client, emit_json

if TYPE_CHECKING:
    from tilde.data import Repository

__all__ = ["repo", "repository_fields"]


def repository_fields(repository: Repository) -> dict[str, Any]:
    """Return the ``--json`` form of a repository (the SDK model's field names).

    Args:
        repository: A loaded repository handle.

    Returns:
        The repository's attributes.

    """
    return {
        "name": repository.name,
        "org": repository.org,
        "id": repository.id,
        "organization_id": repository.organization_id,
        "description": repository.description,
        "visibility": repository.visibility,
        "session_max_duration_days": repository.session_max_duration_days,
        "retention_days": repository.retention_days,
        "created_by_type": repository.created_by_type,
        "created_by": repository.created_by,
        "created_at": repository.created_at,
    }


@click.group()
def repo() -> None:
    """List, create and delete repositories.

    \b
    Examples:
      tilde repo list acme
      tilde repo create acme/data --description "training data"
      tilde repo delete acme/data --yes
    """  # noqa: D301 - click keeps lines after \b as written


@repo.command("list")
@click.argument("org", metavar="ORG")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (fields of the SDK's Repository).")
def list_repos(org: str, as_json: bool) -> None:
    """List an organization's repositories.

    \b
    Examples:
      tilde repo list acme
      tilde repo list acme --json
    """  # noqa: D301 - click keeps lines after \b as written
    rows = [repository_fields(r) for r in _repositories(org).list()]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        description = f"\t{row['description']}" if row["description"] else ""
        click.echo(f"{row['org']}/{row['name']}\t{row['visibility']}{description}")


def _repositories(org: str) -> Any:
    import tilde.data

    return tilde.data.Repositories(client(), org)


@repo.command("create")
@click.argument("repository", type=REPOSITORY, metavar="ORG/REPO")
@click.option("--description", default="", help="What the repository holds.")
def create_repo(repository: tuple[str, str], description: str) -> None:
    """Create a repository.

    \b
    Example:
      tilde repo create acme/data --description "training data"
    """  # noqa: D301 - click keeps lines after \b as written
    org, name = repository
    _repositories(org).create(name, description=description)
    click.echo(f"Created repository {org}/{name}")


@repo.command("delete")
@click.argument("repository", type=REPOSITORY, metavar="ORG/REPO")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete_repo(repository: tuple[str, str], yes: bool) -> None:
    """Delete a repository (asks first unless --yes).

    \b
    Example:
      tilde repo delete acme/scratch --yes
    """  # noqa: D301 - click keeps lines after \b as written
    org, name = repository
    if not yes:
        click.confirm(f"Delete repository {org}/{name}?", abort=True, err=True)
    _repositories(org).delete(name)
    click.echo(f"Deleted repository {org}/{name}")
