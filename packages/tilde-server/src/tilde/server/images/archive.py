"""Import images from files, for machines without a registry: OCI image layouts and ``docker save`` archives.

An OCI layout (a directory, or a tar of one) has ``oci-layout``, ``index.json`` and ``blobs/sha256/``; image
names come from the ``io.containerd.image.name`` annotation, or ``org.opencontainers.image.ref.name`` when it
is a whole reference. A ``docker save`` archive has ``manifest.json`` (names in ``RepoTags``); such images
have no manifest, so their digest is the configuration's (Docker's image id). Every blob reached through a
digest is checked, and every layer against the configuration's ``diff_ids``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tilde.server.images.errors import ImageError, ImagePullError, ImageReferenceError
from tilde.server.images.manifest import parse_manifest, select_platform
from tilde.server.images.model import LocalImage
from tilde.server.images.reference import parse_reference

if TYPE_CHECKING:
    from tilde.server.images.store import ImageStore, LayerSource

__all__ = ["import_archive"]

_MAX_JSON = 16 * 1024 * 1024


class _Files:
    """Read files by name from a directory or a tar archive."""

    def __init__(self, path: Path) -> None:
        self.dir: Path | None = None
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if path.is_dir():
            self.dir = path
        else:
            try:
                self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by close())
            except (OSError, tarfile.TarError) as error:
                raise ImageError(
                    f"{path} is neither a directory nor a readable tar archive: {error}"
                ) from None
            for member in self.tar.getmembers():
                self.members[member.name.removeprefix("./").lstrip("/")] = member

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def exists(self, name: str) -> bool:
        if self.dir is not None:
            return (self.dir / name).is_file()
        return name in self.members

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if ".." in name.split("/") or name.startswith("/"):
            raise ImageError(f"archive names a file outside itself: {name!r}")
        if self.dir is not None:
            with (self.dir / name).open("rb") as local:
                yield local
            return
        assert self.tar is not None
        member = self.members.get(name)
        stream = self.tar.extractfile(member) if member is not None else None
        if stream is None:
            raise ImageError(f"archive has no file {name!r}")
        with stream:
            yield stream

    def read(self, name: str) -> bytes:
        with self.open(name) as stream:
            data = stream.read(_MAX_JSON + 1)
        if len(data) > _MAX_JSON:
            raise ImageError(f"archive file {name!r} is too large for a manifest or config")
        return data

    def blob(self, digest: str) -> bytes:
        data = self.read("blobs/" + digest.replace(":", "/", 1))
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ImagePullError(f"archive blob {digest} does not match its digest")
        return data

    def source(self, name: str) -> LayerSource:
        return lambda: self.open(name)


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise ImageError(f"{what} is not JSON: {error}") from None


def _names(found: list[str], reference: str | None, count: int, what: str) -> list[str]:
    if reference is not None:
        if count != 1:
            raise ImageError(f"the archive holds {count} images; import it without a name to keep theirs")
        return [str(parse_reference(reference))]
    if not found:
        raise ImageReferenceError(f"{what} records no image name: give one with the reference argument")
    return [str(parse_reference(name)) for name in found]


def _import_docker(store: ImageStore, files: _Files, reference: str | None) -> list[LocalImage]:
    entries = _json(files.read("manifest.json"), "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ImageError("manifest.json of the docker archive lists no images")
    images = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ImageError("manifest.json entry without a Config")
        layers = entry.get("Layers") or []
        if not isinstance(layers, list) or not all(isinstance(layer, str) for layer in layers):
            raise ImageError("manifest.json entry with a bad Layers list")
        config_blob = files.read(entry["Config"])
        digest = "sha256:" + hashlib.sha256(config_blob).hexdigest()
        tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        keys = _names(tags, reference, len(entries), "the docker archive")
        images.append(store.install(keys, digest, config_blob, [files.source(layer) for layer in layers]))
    return images


def _annotated_name(notes: dict[str, str]) -> str | None:
    name = notes.get("io.containerd.image.name")
    if name:
        return name
    ref_name = notes.get("org.opencontainers.image.ref.name", "")
    return ref_name if "/" in ref_name or ":" in ref_name else None


def _import_oci(store: ImageStore, files: _Files, reference: str | None) -> list[LocalImage]:
    top = parse_manifest(files.read("index.json"), "application/vnd.oci.image.index.v1+json")
    if not top.manifests:
        raise ImageError("the OCI layout's index.json lists no images")
    images = []
    for position, entry in enumerate(top.manifests):
        notes = top.annotations[position] if position < len(top.annotations) else {}
        body = files.blob(entry.digest)
        manifest = parse_manifest(body, entry.media_type)
        digest = entry.digest
        if manifest.is_index:
            child = select_platform(manifest)
            body = files.blob(child.digest)
            manifest, digest = parse_manifest(body, child.media_type), child.digest
        if manifest.config is None:
            raise ImagePullError(f"OCI layout entry {entry.digest} is not an image manifest")
        name = _annotated_name(notes)
        keys = _names([name] if name else [], reference, len(top.manifests), "the OCI layout")
        config_blob = files.blob(manifest.config.digest)
        sources = [files.source("blobs/" + layer.digest.replace(":", "/", 1)) for layer in manifest.layers]
        images.append(store.install(keys, digest, config_blob, sources))
    return images


def import_archive(store: ImageStore, path: Path, reference: str | None = None) -> list[LocalImage]:
    """Import every image of an OCI layout (directory or tar) or a ``docker save`` archive into ``store``.

    Args:
        store: The image store.
        path: The layout directory or the archive.
        reference: The name for an archive holding exactly one image (required when it records none).

    Returns:
        The imported images.

    Raises:
        ImageError: Not an OCI layout or docker archive, no usable names, corrupt blobs, refused layers.

    """
    if not path.exists():
        raise ImageError(f"{path} does not exist")
    files = _Files(path)
    try:
        if files.exists("manifest.json"):
            return _import_docker(store, files, reference)
        if files.exists("index.json"):
            return _import_oci(store, files, reference)
        raise ImageError(f"{path} is neither an OCI image layout nor a docker save archive")
    finally:
        files.close()
