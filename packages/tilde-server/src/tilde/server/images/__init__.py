"""OCI images for sandboxes: references, pulls from registries, the content-addressed layer store.

`ImageStore` is the entry point: ``await store.ensure("python:3.12")`` returns a `LocalImage` whose unpacked
layers a sandbox mounts as overlay lower directories.
"""

from tilde.server.images.errors import (
    ImageAuthError,
    ImageError,
    ImageNotFound,
    ImagePullError,
    ImageReferenceError,
    ImageRefused,
)
from tilde.server.images.model import ImageConfig, LocalImage
from tilde.server.images.reference import Reference, parse_reference
from tilde.server.images.store import ImageStore

__all__ = [
    "ImageAuthError",
    "ImageConfig",
    "ImageError",
    "ImageNotFound",
    "ImagePullError",
    "ImageReferenceError",
    "ImageRefused",
    "ImageStore",
    "LocalImage",
    "Reference",
    "parse_reference",
]
