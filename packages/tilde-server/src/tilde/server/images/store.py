"""The image store: pulls images, keeps their unpacked layers content-addressed, evicts the least used.

Layout under the store's root (``<data-dir>/images/`` for a server):

```
blobs/sha256/<hex>          verified manifests and configs (layer archives are removed once unpacked)
partial/<hex>               layer downloads in progress (continued with a Range request after a failure)
layers/sha256-<hex>/rootfs  one unpacked layer, shared by every image that contains it
index.json                  reference -> manifest digest, config, layer digests, sizes, last use
```
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from tilde.server.images.model import LocalImage

__all__ = ["ImageStore"]

#: ``credentials(registry_host)`` returns ``(username, password)`` for that registry, or None.
CredentialsLookup = Callable[[str], "tuple[str, str] | None"]


class ImageStore:
    """Pull, unpack, cache and evict images under one directory.

    Args:
        root: The store's directory (created when missing).
        mirrors: Registry mirrors (``https://host[:port]``; ``http://`` for loopback or private addresses
            only) tried in order before Docker Hub for ``docker.io`` images.
        max_bytes: Most unpacked bytes kept; least recently used images whose layers are not pinned are
            removed past it. None keeps everything.
        credentials: Looks up basic-auth credentials by registry host (``host[:port]``).

    """

    def __init__(
        self,
        root: Path,
        *,
        mirrors: Sequence[str] = (),
        max_bytes: int | None = None,
        credentials: CredentialsLookup | None = None,
    ) -> None:
        self.root = Path(root)
        self.mirrors = tuple(mirrors)
        self.max_bytes = max_bytes
        self.credentials = credentials

    async def ensure(
        self, reference: str, *, progress: Callable[[int, int], None] | None = None
    ) -> LocalImage:
        """Return the image, pulling and unpacking it first when the store does not hold it.

        Args:
            reference: An image reference (``python:3.12``, ``host:5000/app@sha256:…``).
            progress: Called with ``(done_bytes, total_bytes)`` of the layer downloads as they advance.

        Raises:
            ImageReferenceError: Malformed reference.
            ImageNotFound: No such image in the registry.
            ImageAuthError: The registry refused access.
            ImagePullError: The pull failed (network, digest mismatch, no manifest for this platform).
            ImageRefused: A layer holds an entry that escapes its directory or is forbidden.

        """
        raise NotImplementedError

    def get(self, reference: str) -> LocalImage | None:
        """Return the stored image for ``reference`` without any network access, or None."""
        raise NotImplementedError

    def pin(self, image: LocalImage) -> AbstractContextManager[None]:
        """Keep ``image``'s layers from being evicted or removed while the context is open."""
        raise NotImplementedError

    def list(self) -> list[LocalImage]:
        """Every stored image, most recently used first."""
        raise NotImplementedError

    def remove(self, reference: str) -> bool:
        """Forget ``reference`` and delete the layers no other image uses (pinned layers stay).

        Returns:
            Whether the store held the reference.

        """
        raise NotImplementedError

    def import_archive(self, path: Path, reference: str | None = None) -> builtins.list[LocalImage]:
        """Import an OCI image layout (directory or tar) or a ``docker save`` archive.

        Args:
            path: The directory or archive.
            reference: The name to store a single image under; None uses the names recorded in the archive.

        Returns:
            The imported images.

        """
        raise NotImplementedError
