"""``tilde ls``, ``tilde cat`` and ``tilde rm``: look at and delete objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tilde.cli._runtime import LOCATION, emit_json, fail, repository, stdout_binary
from tilde.cli._sessions import commit_and_report, entry_fields, read_objects

if TYPE_CHECKING:
    from tilde.data import ListingEntry, SessionObjects
    from tilde.data.urls import TildeURL

__all__ = ["cat", "ls", "rm"]


def _listing(location: TildeURL, recursive: bool) -> tuple[str, list[ListingEntry]]:
    """List what the location names: a prefix's contents, or the one object it names.

    A path without a trailing ``/`` is a folder when something lies under ``path/`` (as a shell's ``ls dir``
    shows the directory's contents), otherwise the object itself.
    """
    objects = read_objects(location)
    delimiter = None if recursive else "/"
    path = location.path
    prefix = path if location.is_prefix else path + "/"
    entries = list(objects.list(prefix=prefix or None, delimiter=delimiter))
    if entries or location.is_prefix:
        return prefix, entries
    exact = [e for e in objects.list(prefix=path, delimiter="/") if e.path == path and e.type == "object"]
    if not exact:
        fail(f"no such object or prefix: {location}")
    parent = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    return parent, exact


def _line(item: ListingEntry, base: str, recursive: bool) -> str:
    shown = item.path if recursive else item.path[len(base) :]
    if item.type == "prefix":
        return f"{'PRE':>30} {shown}"
    entry = item.entry
    when = entry.last_modified.strftime("%Y-%m-%d %H:%M:%S") if entry and entry.last_modified else ""
    size = "" if entry is None or entry.size is None else str(entry.size)
    return f"{when:<19} {size:>10} {shown}"


@click.command()
@click.argument("location", type=LOCATION, metavar="tilde://ORG/REPO[@REF]/PATH")
@click.option("-r", "--recursive", is_flag=True, help="List every object under the prefix, not one level.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON array (path, type, size, last_modified …)."
)
def ls(location: TildeURL, recursive: bool, as_json: bool) -> None:
    """List objects: one level (folders shown as PRE name/) or, with -r, everything under a prefix.

    \b
    Examples:
      tilde ls tilde://acme/data
      tilde ls tilde://acme/data/images/
      tilde ls -r tilde://acme/data@3f2a9c/images --json
    """  # noqa: D301 - click keeps lines after \b as written
    base, entries = _listing(location, recursive)
    if as_json:
        emit_json(entry_fields(e) for e in entries)
        return
    for item in entries:
        click.echo(_line(item, base, recursive))


@click.command()
@click.argument("location", type=LOCATION, metavar="tilde://ORG/REPO[@REF]/PATH")
def cat(location: TildeURL) -> None:
    """Write an object's bytes to stdout, streamed (large objects are never held in memory).

    \b
    Examples:
      tilde cat tilde://acme/data/README.md
      tilde cat tilde://acme/data@3f2a9c/model.bin > model.bin
    """  # noqa: D301 - click keeps lines after \b as written
    if location.is_prefix:
        fail(f"{location} names a prefix; cat needs an object path")
    reader = read_objects(location).get(location.path, cache=False)
    out = stdout_binary()
    with reader:
        for chunk in reader.iter_bytes(chunk_size=1024 * 1024):
            out.write(chunk)
    out.flush()


def _targets(objects: SessionObjects, location: TildeURL, recursive: bool) -> list[str]:
    if not recursive:
        if location.is_prefix:
            fail(f"{location} names a prefix; use -r to delete everything under it")
        from tilde.core.errors import NotFoundError

        try:
            objects.head(location.path)  # a missing object is named before anything is staged
        except NotFoundError:
            fail(f"no such object: {location}")
        return [location.path]
    prefix = location.path if location.is_prefix else location.path + "/"
    paths = [e.path for e in objects.list(prefix=prefix or None) if e.type == "object"]
    if not location.is_prefix:
        paths += [
            e.path for e in objects.list(prefix=location.path, delimiter="/") if e.path == location.path
        ]
    if not paths:
        fail(f"nothing to delete at {location}")
    return paths


@click.command()
@click.argument("locations", type=LOCATION, nargs=-1, required=True, metavar="tilde://ORG/REPO/PATH...")
@click.option("-r", "--recursive", is_flag=True, help="Delete everything under each prefix.")
@click.option("-m", "--message", default=None, help="The commit message.")
def rm(locations: tuple[TildeURL, ...], recursive: bool, message: str | None) -> None:
    """Delete objects (and with -r, prefixes) in one commit.

    \b
    Examples:
      tilde rm tilde://acme/data/old.csv tilde://acme/data/tmp.csv -m "tidy up"
      tilde rm -r tilde://acme/data/scratch/
    """  # noqa: D301 - click keeps lines after \b as written
    first = locations[0]
    for location in locations:
        if location.repo_path != first.repo_path:
            fail("all paths given to rm must be in one repository")
        if location.ref:
            fail(f"{location}: cannot delete at a past commit (drop the @REF)")
    with repository((first.org, first.repo)).session() as session:
        # A dict keeps the order and drops paths named twice (e.g. a file and its folder with -r).
        unique: dict[str, None] = {}
        for location in locations:
            unique.update(dict.fromkeys(_targets(session.objects, location, recursive)))
        paths = list(unique)
        session.objects.delete_many(paths)
        noun = "object" if len(paths) == 1 else "objects"
        commit_and_report(session, message or f"Delete {len(paths)} {noun}", f"Deleted {len(paths)} {noun}")
