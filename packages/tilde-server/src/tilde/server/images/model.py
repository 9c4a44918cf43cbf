"""What the store hands out: an image's runtime configuration and its unpacked layers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ImageConfig", "LocalImage"]


@dataclass(frozen=True)
class ImageConfig:
    """The runtime settings of an image (the ``config`` object of its OCI image configuration).

    Attributes:
        env: ``KEY=value`` entries, in the image's order.
        working_dir: The initial working directory; ``""`` when unset.
        user: ``""``, ``name``, ``uid``, ``uid:gid`` or ``name:group`` as the image states it (not resolved).
        entrypoint: The entrypoint argv (empty when unset).
        cmd: The default arguments (empty when unset).

    """

    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalImage:
    """An image present in the store, ready to be mounted.

    Attributes:
        reference: The canonical reference, e.g. ``docker.io/library/python:3.12`` (a digest reference when
            the image was named by digest only).
        digest: The platform-specific manifest's digest (``sha256:…``).
        layers: The unpacked layer directories, bottom first; mount them as overlay lower directories in
            reverse order. Whiteouts are converted to overlayfs form, not applied: a character device 0/0
            when the store runs as root, otherwise an empty file with the ``user.overlay.whiteout`` xattr in
            a directory marked ``user.overlay.opaque=x`` (mount with ``userxattr``). Opaque directories carry
            ``user.overlay.opaque=y``, and ``trusted.overlay.opaque=y`` too when the store runs as root.
        config: The image's runtime configuration.
        size: Unpacked bytes of all layers.

    """

    reference: str
    digest: str
    layers: tuple[Path, ...]
    config: ImageConfig
    size: int
