"""Manifests, indexes and image configurations: parsing, and choosing this machine's platform."""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass
from typing import Any

from tilde.server.images.errors import ImagePullError
from tilde.server.images.model import ImageConfig

__all__ = [
    "INDEX_TYPES",
    "MANIFEST_ACCEPT",
    "MANIFEST_TYPES",
    "Descriptor",
    "Manifest",
    "host_platform",
    "parse_config",
    "parse_manifest",
    "select_platform",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
#: The Accept header of manifest requests: every type this client reads.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")
_ARCHITECTURES = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest says about one blob or child manifest.

    Attributes:
        media_type: The blob's media type.
        digest: ``sha256:…``.
        size: Bytes.
        platform: ``(os, architecture, variant)`` for index entries, else None.

    """

    media_type: str
    digest: str
    size: int
    platform: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest or index.

    Attributes:
        media_type: The document's media type.
        config: The configuration blob (image manifests only).
        layers: The layer blobs, bottom first (image manifests only).
        manifests: The child manifests (indexes only).
        annotations: Index entry annotations, in ``manifests`` order (indexes only).

    """

    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    annotations: tuple[dict[str, str], ...] = ()

    @property
    def is_index(self) -> bool:
        """Whether this is an index (a list of per-platform manifests)."""
        return self.media_type in INDEX_TYPES


def _descriptor(raw: Any, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise ImagePullError(f"{where}: a descriptor is not an object")
    digest, size = raw.get("digest"), raw.get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ImagePullError(f"{where}: unsupported digest {digest!r} (sha256 only)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImagePullError(f"{where}: bad size {size!r}")
    found = raw.get("platform")
    plat = None
    if isinstance(found, dict):
        plat = (str(found.get("os", "")), str(found.get("architecture", "")), str(found.get("variant", "")))
    return Descriptor(str(raw.get("mediaType", "")), digest, size, plat)


def parse_manifest(body: bytes, content_type: str = "") -> Manifest:
    """Parse a manifest or index (OCI, or Docker v2 schema 2 / manifest list).

    Args:
        body: The document as received.
        content_type: The response's media type, used when the document does not name its own.

    Raises:
        ImagePullError: Not JSON, an unsupported schema, or malformed descriptors.

    """
    try:
        doc = json.loads(body)
    except ValueError as error:
        raise ImagePullError(f"manifest is not JSON: {error}") from None
    if not isinstance(doc, dict):
        raise ImagePullError("manifest is not a JSON object")
    media_type = str(doc.get("mediaType") or content_type.split(";")[0].strip())
    if not media_type:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if doc.get("schemaVersion") != 2:
        raise ImagePullError(f"unsupported manifest schema version {doc.get('schemaVersion')!r} (2 only)")
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise ImagePullError("index without a manifests list")
        children = tuple(_descriptor(entry, "index") for entry in entries)
        notes = tuple(
            {str(k): str(v) for k, v in (entry.get("annotations") or {}).items()}
            if isinstance(entry.get("annotations"), dict)
            else {}
            for entry in entries
        )
        return Manifest(media_type, None, (), children, notes)
    if media_type not in MANIFEST_TYPES:
        raise ImagePullError(f"unsupported manifest media type {media_type!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImagePullError("manifest without a layers list")
    return Manifest(
        media_type,
        _descriptor(doc.get("config"), "manifest config"),
        tuple(_descriptor(layer, "manifest layer") for layer in layers),
        (),
    )


def host_platform() -> tuple[str, str, str]:
    """Return this machine's ``(os, architecture, variant)`` in OCI terms (``linux``, ``amd64``, ``""``)."""
    machine = platform.machine().lower()
    arch, variant = _ARCHITECTURES.get(machine, (machine, ""))
    return ("linux", arch, variant)


def select_platform(index: Manifest, wanted: tuple[str, str, str] | None = None) -> Descriptor:
    """Pick the entry of ``index`` for ``wanted`` (default: this machine).

    An entry without a variant matches any wanted variant; attestation entries (``unknown/unknown``) never
    match.

    Raises:
        ImagePullError: No entry for the platform (the message lists those available).

    """
    os_name, arch, variant = wanted or host_platform()
    fallback: Descriptor | None = None
    for entry in index.manifests:
        if entry.platform is None:
            continue
        e_os, e_arch, e_variant = entry.platform
        if e_os != os_name or e_arch != arch:
            continue
        if e_variant == variant:
            return entry
        if fallback is None and (not e_variant or not variant):
            fallback = entry
    if fallback is not None:
        return fallback
    available = sorted({"/".join(p for p in e.platform if p) for e in index.manifests if e.platform})
    wanted_text = "/".join(p for p in (os_name, arch, variant) if p)
    raise ImagePullError(
        f"no image for {wanted_text} in the index (it has: {', '.join(available) or 'none'})"
    )


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ImagePullError(f"image config: expected a list of strings, got {value!r}")


def parse_config(body: bytes) -> tuple[ImageConfig, tuple[str, ...]]:
    """Parse an image configuration blob.

    Returns:
        The runtime configuration and the ``rootfs.diff_ids`` (uncompressed layer digests, bottom first).

    Raises:
        ImagePullError: Malformed configuration.

    """
    try:
        doc = json.loads(body)
    except ValueError as error:
        raise ImagePullError(f"image config is not JSON: {error}") from None
    if not isinstance(doc, dict):
        raise ImagePullError("image config is not a JSON object")
    runtime = doc.get("config") or {}
    if not isinstance(runtime, dict):
        raise ImagePullError("image config: 'config' is not an object")
    rootfs = doc.get("rootfs") or {}
    diff_ids = _strings(rootfs.get("diff_ids") if isinstance(rootfs, dict) else None)
    for diff_id in diff_ids:
        if not _DIGEST.match(diff_id):
            raise ImagePullError(f"image config: unsupported diff id {diff_id!r} (sha256 only)")
    config = ImageConfig(
        env=_strings(runtime.get("Env")),
        working_dir=str(runtime.get("WorkingDir") or ""),
        user=str(runtime.get("User") or ""),
        entrypoint=_strings(runtime.get("Entrypoint")),
        cmd=_strings(runtime.get("Cmd")),
    )
    return config, diff_ids
