"""``tilde cp``: copy files and folders to, from and within a repository.

Writes go through one session and end in one commit, so a folder upload is all-or-nothing.
``cp -r DIR tilde://ORG/REPO/PREFIX`` puts the *contents* of DIR under PREFIX and
``cp -r tilde://ORG/REPO/PREFIX DIR`` puts what is under PREFIX into DIR (as ``aws s3 cp --recursive``
does), so the two round-trip to the same tree.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from tilde.cli._progress import ProgressReader, make_progress
from tilde.cli._runtime import fail, info, repository
from tilde.cli._sessions import commit_and_report, human_size, read_objects

if TYPE_CHECKING:
    from tilde.data.urls import TildeURL

__all__ = ["cp"]


def _as_prefix(path: str) -> str:
    return path if path == "" or path.endswith("/") else path + "/"


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _upload(src: Path, dst: TildeURL, *, recursive: bool, message: str | None, quiet: bool) -> None:
    if dst.ref:
        fail(f"{dst}: cannot write at a past commit (drop the @REF)")
    is_dir = src.is_dir()
    if not is_dir:
        src.stat()  # a missing source fails here with its name, before a session is opened
    elif not recursive:
        fail(f"{src} is a directory (use -r to copy folders)")
    progress = make_progress("upload", quiet=quiet)
    with repository((dst.org, dst.repo)).session() as session:
        if is_dir:
            prefix = _as_prefix(dst.path)
            # The transfer itself calls progress.finish(), also when it fails.
            result = session.objects.upload_folder(src, prefix, progress=progress)
            if result.files == 0:
                fail(f"{src} holds no files; nothing was copied")
            where = dst if dst.is_prefix or not dst.path else dst.child("")
            what = f"Uploaded {_files(result.files)} ({human_size(result.bytes)}) to {where}"
        else:
            # The object takes the file's name in NFC, as folder uploads do (`scan_folder`).
            target = dst.child(unicodedata.normalize("NFC", src.name)) if dst.is_prefix else dst
            size = _put_file(session.objects, src, target.path, progress)
            what = f"Uploaded {src.name} ({human_size(size)}) to {target}"
        commit_and_report(session, message or f"Copy {src.name} to {dst}", what)


def _put_file(objects: object, src: Path, path: str, progress: object) -> int:
    from tilde.cli._progress import BarProgress
    from tilde.data import SessionObjects

    objects = cast("SessionObjects", objects)
    with src.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if isinstance(progress, BarProgress):
            progress.start(total_files=1, total_bytes=size)
            try:
                objects.put(path, ProgressReader(handle, progress))  # type: ignore[arg-type]
                progress.advance(files=1)
            finally:
                progress.finish()
        else:
            objects.put(path, handle)
    return size


def _download(src: TildeURL, dst: Path, *, recursive: bool, quiet: bool) -> None:
    objects = read_objects(src)
    progress = make_progress("download", quiet=quiet)
    if recursive:
        result = objects.download(_as_prefix(src.path), dst, progress=progress)
        if result.files == 0:
            fail(f"nothing under {src}")
        info(f"Downloaded {_files(result.files)} ({human_size(result.bytes)}) to {dst}")
        return
    if src.is_prefix:
        fail(f"{src} names a prefix; use -r to copy everything under it")
    target = dst / src.name if dst.is_dir() or str(dst).endswith(os.sep) else dst
    target.parent.mkdir(parents=True, exist_ok=True)
    # Parallel ranged GETs into a temporary file beside the target, renamed into place when complete: an
    # interrupted copy never leaves half a file, and the same copy run again fetches only what is missing.
    size = objects.download_file(src.path, target, progress=progress)
    info(f"Downloaded {src} ({human_size(size)}) to {target}")


def _copy_remote(src: TildeURL, dst: TildeURL, *, recursive: bool, message: str | None) -> None:
    if src.repo_path != dst.repo_path:
        fail("tilde cp copies within one repository; download and upload to copy between repositories")
    if src.ref or dst.ref:
        fail("tilde cp copies within the latest state of a repository (drop the @REF)")
    with repository((src.org, src.repo)).session() as session:
        objects = session.objects
        if recursive:
            prefix = _as_prefix(src.path)
            into = _as_prefix(dst.path)
            pairs = [(e.path, into + e.path[len(prefix) :]) for e in objects.list(prefix=prefix or None)]
            pairs = [(a, b) for a, b in pairs if a != b]
            if not pairs:
                fail(f"nothing under {src}")
            for source_path, destination_path in pairs:
                objects.copy(source_path, destination_path)
            what = f"Copied {_files(len(pairs))} to {dst}"
        else:
            if src.is_prefix:
                fail(f"{src} names a prefix; use -r to copy everything under it")
            target = dst.child(src.name) if dst.is_prefix else dst
            objects.copy(src.path, target.path)
            what = f"Copied {src} to {target}"
        commit_and_report(session, message or f"Copy {src} to {dst}", what)


@click.command()
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.option("-r", "--recursive", is_flag=True, help="Copy folders / everything under a prefix.")
@click.option("-m", "--message", default=None, help="The commit message (uploads and in-repository copies).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (it is only drawn on a terminal anyway).")
def cp(src: str, dst: str, recursive: bool, message: str | None, quiet: bool) -> None:
    """Copy local → repository, repository → local, or within one repository.

    Uploads and in-repository copies make one commit. A local directory needs -r; its contents go under
    the destination prefix. A progress bar is drawn on stderr when it is a terminal.

    \b
    Examples:
      tilde cp model.bin tilde://acme/data/models/ -m "new model"
      tilde cp -r ./images tilde://acme/data/images
      tilde cp -r tilde://acme/data@3f2a9c/images ./images
      tilde cp tilde://acme/data/a.csv tilde://acme/data/archive/a.csv
    """  # noqa: D301 - click keeps lines after \b as written
    from tilde.data.urls import is_tilde_url, parse_url

    try:
        source = parse_url(src) if is_tilde_url(src) else None
        destination = parse_url(dst) if is_tilde_url(dst) else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if source is None and destination is None:
        fail("one of SRC and DST must be a tilde://ORG/REPO/PATH location")
    if source is not None and destination is not None:
        _copy_remote(source, destination, recursive=recursive, message=message)
    elif destination is not None:
        _upload(Path(src), destination, recursive=recursive, message=message, quiet=quiet)
    else:
        assert source is not None
        _download(source, Path(dst), recursive=recursive, quiet=quiet)
