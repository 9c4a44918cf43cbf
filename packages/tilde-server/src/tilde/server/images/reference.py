"""Image references, resolved the way container tools do.

``python:3.12`` → ``docker.io/library/python:3.12``; ``ghcr.io/org/app`` → ``ghcr.io/org/app:latest``;
``localhost:5000/app@sha256:…`` keeps its registry and digest. The first path component is a registry when it
contains a ``.`` or a ``:`` or is ``localhost``; otherwise the image is on Docker Hub, where one-component
names live under ``library/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tilde.server.images.errors import ImageReferenceError

__all__ = ["DOCKER_HUB", "Reference", "parse_reference"]

#: The canonical name of Docker Hub, and the host its registry API answers on.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_HOST = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?\Z"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A parsed, canonical image reference.

    Attributes:
        registry: The registry's host (and port), ``docker.io`` for Docker Hub.
        repository: The repository path, e.g. ``library/python``.
        tag: The tag, or None when the reference names a digest only.
        digest: The manifest digest (``sha256:…``), or None.

    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host the registry's API answers on (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def is_docker_hub(self) -> bool:
        """Whether the image lives on Docker Hub (the names registry mirrors serve)."""
        return self.registry == DOCKER_HUB

    @property
    def manifest_ref(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        """Return this reference pinned to ``digest`` (the tag kept for display)."""
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse an image reference and fill in the defaults (Docker Hub, ``library/``, tag ``latest``).

    Args:
        text: ``name[:tag][@sha256:hex]`` where ``name`` may start with ``host[:port]/``.

    Raises:
        ImageReferenceError: The reference is malformed; the message names the offending part.

    """
    if not isinstance(text, str) or not text or text != text.strip():
        raise ImageReferenceError(f"invalid image reference {text!r}: empty or surrounded by spaces")
    rest = text
    digest: str | None = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise ImageReferenceError(
                f"invalid image reference {text!r}: the digest must be sha256: and 64 lowercase hex digits"
            )
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise ImageReferenceError(
                f"invalid image reference {text!r}: tag {tag!r} must be 1-128 letters, digits, '_', '.'"
                " or '-', not starting with '.' or '-'"
            )
    parts = rest.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, components = first, parts[1:]
        if not _HOST.match(registry):
            raise ImageReferenceError(f"invalid image reference {text!r}: bad registry host {registry!r}")
        if registry.lower() in _HUB_ALIASES:
            registry = DOCKER_HUB
    else:
        registry, components = DOCKER_HUB, parts
    for component in components:
        if not _COMPONENT.match(component):
            raise ImageReferenceError(
                f"invalid image reference {text!r}: repository path component {component!r} must be lowercase"
                " letters and digits, separated by '.', '_', '__' or '-'"
            )
    if registry == DOCKER_HUB and len(components) == 1:
        components = ["library", *components]
    repository = "/".join(components)
    if len(registry) + 1 + len(repository) > _MAX_NAME:
        raise ImageReferenceError(f"invalid image reference {text!r}: name over {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, repository, tag, digest)
