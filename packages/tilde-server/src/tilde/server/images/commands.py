"""``tilde-server image pull|list|rm|import``, and the registry options ``tilde-server serve`` shares.

The commands work on ``<data-dir>/images`` while a server runs on the same data directory: the store's index
is locked for every change, and layers a running sandbox uses are pinned with file locks, so ``rm`` and the
cache limit never delete them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from tilde.server.images.distribution import validate_mirror
from tilde.server.images.errors import ImageError
from tilde.server.images.settings import IMAGES_DIR, read_registry_credentials
from tilde.server.images.store import ImageStore

__all__ = ["image", "registry_options", "registry_settings"]

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULT_DATA_DIR = Path("~/.tilde/server")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


def registry_options(function: F) -> F:
    """Add ``--registry-mirror`` (repeatable), ``--registry-auth-file`` and ``--image-cache-size``."""
    function = click.option(
        "--image-cache-size",
        envvar="TILDE_SERVER_IMAGE_CACHE_SIZE",
        type=click.IntRange(1),
        default=None,
        help="MiB of unpacked sandbox images kept; least recently used images not in use are removed past "
        "it (env TILDE_SERVER_IMAGE_CACHE_SIZE; default: no limit).",
    )(function)
    function = click.option(
        "--registry-auth-file",
        envvar="TILDE_SERVER_REGISTRY_AUTH_FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help='Credentials of private registries, in Docker\'s config.json form ({"auths": {HOST: {"auth": '
        "base64(USER:PASSWORD)}}}) (env TILDE_SERVER_REGISTRY_AUTH_FILE).",
    )(function)
    return click.option(
        "--registry-mirror",
        "registry_mirrors",
        envvar="TILDE_SERVER_REGISTRY_MIRROR",
        multiple=True,
        metavar="URL",
        help="A registry mirror asked first for Docker Hub images such as python:3.12; repeat for several, "
        "tried in order. http:// only for a mirror on loopback or a private network (env "
        "TILDE_SERVER_REGISTRY_MIRROR, space-separated).",
    )(function)


def registry_settings(
    registry_mirrors: tuple[str, ...], registry_auth_file: Path | None, image_cache_size: int | None
) -> dict[str, Any]:
    """Check the registry options; return them as `ServerConfig` fields (exits with one line if bad)."""
    try:
        mirrors = tuple(validate_mirror(url) for url in registry_mirrors)
        credentials = read_registry_credentials(registry_auth_file) if registry_auth_file else {}
    except ValueError as error:
        _fail(str(error))
    return {
        "registry_mirrors": mirrors,
        "registry_credentials": credentials,
        "image_cache_bytes": image_cache_size * 1024 * 1024 if image_cache_size else None,
    }


_data_dir_option = click.option(
    "--data-dir",
    envvar="TILDE_SERVER_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The server's data directory (env TILDE_SERVER_DATA_DIR; default ~/.tilde/server).",
)


def _store(data_dir: Path | None, **options: Any) -> ImageStore:
    settings = registry_settings(
        options.get("registry_mirrors", ()),
        options.get("registry_auth_file"),
        options.get("image_cache_size"),
    )
    credentials = settings["registry_credentials"]
    root = (data_dir or _DEFAULT_DATA_DIR).expanduser() / IMAGES_DIR
    try:
        return ImageStore(
            root,
            mirrors=settings["registry_mirrors"],
            max_bytes=settings["image_cache_bytes"],
            credentials=credentials.get if credentials else None,
        )
    except OSError as error:
        _fail(f"cannot use the image store {root}: {error.strerror or error}")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@click.group()
def image() -> None:
    """Pull, list, remove and import the OCI images sandboxes run on (kept under DATA_DIR/images)."""


@image.command("pull")
@click.argument("reference")
@_data_dir_option
@registry_options
def pull(reference: str, data_dir: Path | None, **options: Any) -> None:
    """Pull REFERENCE (e.g. python:3.12, registry.example:5000/team/app@sha256:…) into the image store.

    An image already stored is not pulled again; remove it first to update a tag.
    """
    store = _store(data_dir, **options)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if sys.stderr.isatty() and (now - last[0] > 0.2 or done == total):
            last[0] = now
            click.echo(f"\r{_size(done)} / {_size(total)}", nl=False, err=True)

    try:
        found = asyncio.run(store.ensure(reference, progress=progress))
    except ImageError as error:
        _fail(str(error))
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(f"{found.reference}\t{found.digest}\t{len(found.layers)} layers\t{_size(found.size)}")


@image.command("list")
@_data_dir_option
def list_images(data_dir: Path | None) -> None:
    """List stored images, most recently used first: reference, digest, layers, unpacked size."""
    store = _store(data_dir)
    for found in store.list():
        click.echo(f"{found.reference}\t{found.digest}\t{len(found.layers)} layers\t{_size(found.size)}")


@image.command("rm")
@click.argument("references", nargs=-1, required=True)
@_data_dir_option
def remove(references: tuple[str, ...], data_dir: Path | None) -> None:
    """Remove images; layers other images (or running sandboxes) use stay."""
    store = _store(data_dir)
    missing = []
    for reference in references:
        try:
            removed = store.remove(reference)
        except ImageError as error:
            _fail(str(error))
        if removed:
            click.echo(f"removed {reference}")
        else:
            missing.append(reference)
    if missing:
        _fail(f"no such image: {', '.join(missing)}")


@image.command("import")
@click.argument("archive", type=click.Path(exists=True, path_type=Path))
@click.option("--name", default=None, help="Store the archive's single image under this reference.")
@_data_dir_option
def import_(archive: Path, name: str | None, data_dir: Path | None) -> None:
    """Import an OCI image layout (directory or tar) or a `docker save` archive.

    For machines without a registry: the images land in the store as if pulled.
    """
    store = _store(data_dir)
    try:
        imported = store.import_archive(archive, name)
    except ImageError as error:
        _fail(str(error))
    for found in imported:
        click.echo(f"{found.reference}\t{found.digest}\t{len(found.layers)} layers\t{_size(found.size)}")
