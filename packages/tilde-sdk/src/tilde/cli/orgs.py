"""``tilde org``: list and create organizations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from tilde.cli._runtime import client, emit_json

if TYPE_CHECKING:
    from tilde.admin import Organization

__all__ = ["org", "organization_fields"]


def organization_fields(organization: Organization) -> dict[str, Any]:
    """Return the ``--json`` form of an organization (the SDK model's field names).

    Args:
        organization: The organization.

    Returns:
        ``id``, ``name``, ``display_name`` and ``created_at``.

    """
    return {
        "id": organization.id,
        "name": organization.name,
        "display_name": organization.display_name,
        "created_at": organization.created_at,
    }


@click.group()
def org() -> None:
    """List and create organizations.

    \b
    Examples:
      tilde org list
      tilde org create acme --display-name "Acme Corp"
    """  # noqa: D301 - click keeps lines after \b as written


@org.command("list")
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON array (fields of the SDK's Organization)."
)
def list_orgs(as_json: bool) -> None:
    """List the organizations you belong to.

    \b
    Examples:
      tilde org list
      tilde org list --json
    """  # noqa: D301 - click keeps lines after \b as written
    rows = [organization_fields(o) for o in client().organizations.list()]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']}\t{row['display_name']}")


@org.command("create")
@click.argument("name", metavar="NAME")
@click.option("--display-name", default=None, help="A human-friendly name (default: NAME).")
def create_org(name: str, display_name: str | None) -> None:
    """Create an organization.

    \b
    Example:
      tilde org create acme --display-name "Acme Corp"
    """  # noqa: D301 - click keeps lines after \b as written
    created = client().organizations.create(name, display_name or name)
    click.echo(f"Created organization {created.name or name}")
