"""Errors raised while resolving, pulling, unpacking and storing images.

```
ImageError
├── ImageReferenceError   (also a ValueError: the reference is malformed)
├── ImageNotFound         (the registry or the store has no such image/tag/digest)
├── ImageAuthError        (the registry refused the credentials, or asked for some we do not have)
├── ImagePullError        (network failure, bad digest, unsupported manifest, no matching platform)
└── ImageRefused          (a layer or archive tries to escape its directory or holds forbidden entries)
```
"""

from __future__ import annotations

__all__ = [
    "ImageAuthError",
    "ImageError",
    "ImageNotFound",
    "ImagePullError",
    "ImageReferenceError",
    "ImageRefused",
]


class ImageError(Exception):
    """Base class of every image error."""


class ImageReferenceError(ImageError, ValueError):
    """The image reference is malformed (the message says which part)."""


class ImageNotFound(ImageError):
    """The image, tag or digest does not exist in the registry (or, for cache-only look-ups, in the store)."""


class ImageAuthError(ImageError):
    """The registry refused access: missing or wrong credentials, or a token that could not be obtained."""


class ImagePullError(ImageError):
    """The pull failed: network, digest mismatch, unsupported media type, or no manifest for this platform."""


class ImageRefused(ImageError):
    """A layer or archive was refused: an entry escapes the target, or is a device node or setuid file."""
