"""The image store: pulls images, keeps their unpacked layers content-addressed, evicts the least used.

Layout under the store's root (``<data-dir>/images/`` for a server):

```
blobs/sha256/<hex>      verified manifests and configs (layer archives are deleted once unpacked)
partial/<hex>           layer downloads in progress (continued with a Range request after a failure)
layers/sha256-<hex>     one unpacked layer, named by its uncompressed digest, shared by every image using it
locks/sha256-<hex>      a layer's lock file: shared while pinned, exclusive while being deleted
index.json              reference -> manifest digest, config, layers, size, last use; layer sizes
```

A layer is downloaded at most once: layers already unpacked (by any image) are skipped. A second `ensure`
of a stored reference never touches the network (a tag is not re-resolved; remove the image to update it),
except for an image pulled with a caller's own credentials: the registry confirms each new caller's access
to its manifest before the cached layers are handed out.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import fcntl
import hashlib
import io
import logging
import os
import queue
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlsplit

from tilde.server.images._index import Index, LayerLock
from tilde.server.images.distribution import RegistryClient, validate_mirror
from tilde.server.images.errors import ImageNotFound, ImagePullError, ImageRefused
from tilde.server.images.manifest import parse_config, parse_manifest, select_platform
from tilde.server.images.model import ImageConfig, LocalImage
from tilde.server.images.reference import Reference, parse_reference
from tilde.server.images.unpack import SetuidPolicy, remove_tree, unpack_layer

__all__ = ["ImageStore", "LayerSource"]

logger = logging.getLogger(__name__)

#: ``credentials(registry_host)`` returns ``(username, password)`` for that registry, or None.
CredentialsLookup = Callable[[str], "tuple[str, str] | None"]
#: Opens one layer archive for reading (used by imports).
LayerSource = Callable[[], "contextlib.AbstractContextManager[IO[bytes]]"]


def _config(raw: dict[str, Any]) -> ImageConfig:
    return ImageConfig(
        env=tuple(raw.get("env", ())),
        working_dir=str(raw.get("working_dir", "")),
        user=str(raw.get("user", "")),
        entrypoint=tuple(raw.get("entrypoint", ())),
        cmd=tuple(raw.get("cmd", ())),
    )


def _write_private(path: Path, data: bytes) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        out.write(data)


def _layer_name(diff_id: str) -> str:
    return diff_id.replace(":", "-")


class ImageStore:
    """Pull, unpack, cache and evict images under one directory.

    Args:
        root: The store's directory (created when missing).
        mirrors: Registry mirrors (``https://host[:port]``; ``http://`` for loopback or private addresses
            only) tried in order before Docker Hub for ``docker.io`` images.
        max_bytes: Most unpacked bytes kept; least recently used images whose layers are not pinned are
            removed past it. None keeps everything.
        credentials: Looks up basic-auth credentials by registry host (``host[:port]``; Docker Hub's under
            ``docker.io``).
        setuid: Setuid/setgid files in layers: ``"strip"`` their bits (default), ``"refuse"`` the layer, or
            ``"keep"`` them.
        concurrency: Layers downloaded at once.
        http: The httpx client for registries (default: one per pull).

    Raises:
        ValueError: A mirror URL is not acceptable (see `validate_mirror`).

    """

    def __init__(
        self,
        root: Path,
        *,
        mirrors: Sequence[str] = (),
        max_bytes: int | None = None,
        credentials: CredentialsLookup | None = None,
        setuid: SetuidPolicy = "strip",
        concurrency: int = 4,
        http: Any = None,
    ) -> None:
        self.root = Path(root)
        self.mirrors = tuple(validate_mirror(m) for m in mirrors)
        self.max_bytes = max_bytes
        self.credentials = credentials
        self.setuid: SetuidPolicy = setuid
        self.concurrency = max(1, concurrency)
        self.http = http
        #: Bytes of layer blobs received by this store's pulls (tests and benchmarks read it).
        self.bytes_received = 0
        # Private like the rest of a server's data directory; sandboxes read the layers as the same user.
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("blobs", "blobs/sha256", "partial", "layers", "locks"):
            (self.root / sub).mkdir(mode=0o700, exist_ok=True)
        self._index = Index(self.root)
        self._pulls: dict[str, asyncio.Lock] = {}
        self._layers_fetching: dict[str, asyncio.Lock] = {}

    # -- paths -------------------------------------------------------------------------------------------

    def layer_path(self, diff_id: str) -> Path:
        """Return the directory of the layer with uncompressed digest ``diff_id``."""
        return self.root / "layers" / _layer_name(diff_id)

    def _blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    # -- look-ups ----------------------------------------------------------------------------------------

    def _image(self, key: str, entry: dict[str, Any]) -> LocalImage:
        return LocalImage(
            reference=key,
            digest=entry["digest"],
            layers=tuple(self.layer_path(d) for d in entry["layers"]),
            config=_config(entry["config"]),
            size=int(entry["size"]),
        )

    def _find(self, data: dict[str, Any], ref: Reference) -> str | None:
        key = str(ref)
        if key in data["images"]:
            return key
        if ref.digest is not None:
            for other, entry in data["images"].items():
                if entry["digest"] == ref.digest and parse_reference(other).name == ref.name:
                    return str(other)
        return None

    def get(self, reference: str, *, private: bool = True) -> LocalImage | None:
        """Return the stored image for ``reference`` without any network access, or None.

        Args:
            reference: An image reference.
            private: Also return an image pulled with per-call credentials (`ensure`'s ``credentials``). A
                sandbox passes False: such an image is served only after the registry confirms the caller's
                own access (`ensure` does that), so a cached private image never reaches another tenant.

        Raises:
            ImageReferenceError: Malformed reference.

        """
        ref = parse_reference(reference)
        data = self._index.read()
        key = self._find(data, ref)
        if key is None:
            return None
        entry = data["images"][key]
        if entry.get("private") and not private:
            return None
        if not all(self.layer_path(d).is_dir() for d in entry["layers"]):
            return None
        with self._index.update() as fresh:
            if key in fresh["images"]:
                fresh["images"][key]["last_used"] = time.time()
        return self._image(key, entry)

    def list(self) -> builtins.list[LocalImage]:
        """Every stored image, most recently used first."""
        data = self._index.read()
        keys = sorted(data["images"], key=lambda k: data["images"][k].get("last_used", 0.0), reverse=True)
        return [self._image(k, data["images"][k]) for k in keys]

    def total_bytes(self) -> int:
        """Unpacked bytes of every stored layer."""
        return sum(int(layer["size"]) for layer in self._index.read()["layers"].values())

    # -- pins and eviction -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _pin_ids(self, diff_ids: Sequence[str]) -> Iterator[None]:
        locks = []
        try:
            for diff_id in dict.fromkeys(diff_ids):
                lock = LayerLock(self.root / "locks", diff_id)
                lock.share()
                locks.append(lock)
            yield
        finally:
            for lock in locks:
                lock.release()

    @contextlib.contextmanager
    def _pin(self, image: LocalImage) -> Iterator[None]:
        ids = [path.name.replace("-", ":", 1) for path in image.layers]
        with self._pin_ids(ids):
            missing = [str(path) for path in image.layers if not path.is_dir()]
            if missing:
                raise ImageNotFound(f"{image.reference} was removed from the store; ensure it again")
            yield

    def pin(self, image: LocalImage) -> AbstractContextManager[None]:
        """Keep ``image``'s layers from being evicted or removed while the context is open.

        Pins are file locks, so they hold against other processes using the same store too.

        Raises:
            ImageNotFound: The image's layers were deleted before the pin was taken.

        """
        return self._pin(image)

    def _collect(self, data: dict[str, Any]) -> int:
        """Delete unreferenced, unpinned layers; return the bytes freed."""
        used = {d for entry in data["images"].values() for d in entry["layers"]}
        freed = 0
        for diff_id in [d for d in data["layers"] if d not in used]:
            lock = LayerLock(self.root / "locks", diff_id)
            if not lock.try_exclusive():
                continue
            try:
                remove_tree(self.layer_path(diff_id))
                freed += int(data["layers"].pop(diff_id)["size"])
            finally:
                lock.release()
        return freed

    def _pinned(self, diff_id: str) -> bool:
        lock = LayerLock(self.root / "locks", diff_id)
        if lock.try_exclusive():
            lock.release()
            return False
        return True

    def evict(self, keep: str | None = None) -> builtins.list[str]:
        """Remove least recently used images until the store fits ``max_bytes``; return the removed ones.

        Images with a pinned layer and ``keep`` stay; layers shared with remaining images stay too.
        """
        removed: builtins.list[str] = []
        if self.max_bytes is None:
            return removed
        with self._index.update() as data:
            self._collect(data)
            total = sum(int(layer["size"]) for layer in data["layers"].values())
            by_age = sorted(data["images"], key=lambda k: data["images"][k].get("last_used", 0.0))
            for key in by_age:
                if total <= self.max_bytes:
                    break
                if key == keep or any(self._pinned(d) for d in data["images"][key]["layers"]):
                    continue
                del data["images"][key]
                removed.append(key)
                total -= self._collect(data)
        if removed:
            logger.info("image cache over its limit: removed %s", ", ".join(removed))
        return removed

    def remove(self, reference: str) -> bool:
        """Forget ``reference`` and delete the layers no other image uses (pinned layers stay until unpinned).

        Returns:
            Whether the store held the reference.

        """
        ref = parse_reference(reference)
        with self._index.update() as data:
            key = self._find(data, ref)
            if key is None:
                return False
            del data["images"][key]
            self._collect(data)
        return True

    # -- installing layers and images --------------------------------------------------------------------

    def _unpack(self, source: LayerSource, diff_id: str | None) -> tuple[str, int]:
        """Unpack one layer into the store (verifying ``diff_id`` when given); return its id and size."""
        if diff_id is not None and self.layer_path(diff_id).is_dir():
            size = self._index.read()["layers"].get(diff_id, {}).get("size")
            if size is not None:
                return diff_id, int(size)
        tmp = self.root / "layers" / f".tmp-{uuid.uuid4().hex}"
        try:
            try:
                with source() as stream:
                    result = unpack_layer(stream, tmp, setuid=self.setuid, max_bytes=self.max_bytes)
            except OSError as error:
                # A full disk, or a file system without user xattrs (whiteouts need them when not root).
                raise ImagePullError(f"cannot unpack a layer into {self.root}: {error}") from error
            if diff_id is not None and result.diff_id != diff_id:
                raise ImagePullError(f"layer {diff_id} unpacked to a different digest ({result.diff_id})")
            final = self.layer_path(result.diff_id)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
                remove_tree(tmp)  # another pull unpacked the same layer first
        except BaseException:
            remove_tree(tmp)
            raise
        with self._index.update() as data:
            data["layers"][result.diff_id] = {"size": result.size}
        return result.diff_id, result.size

    def _record(
        self,
        keys: Sequence[str],
        digest: str,
        config: ImageConfig,
        diff_ids: Sequence[str],
        private: bool = False,
    ) -> None:
        with self._index.update() as data:
            size = sum(int(data["layers"][d]["size"]) for d in dict.fromkeys(diff_ids))
            now = time.time()
            for key in keys:
                entry = {
                    "digest": digest,
                    "config": dataclasses.asdict(config),
                    "layers": list(diff_ids),
                    "size": size,
                    "last_used": now,
                }
                if private:
                    entry["private"] = True
                data["images"][key] = entry

    def install(
        self,
        keys: Sequence[str],
        digest: str,
        config_blob: bytes,
        layers: Sequence[LayerSource],
    ) -> LocalImage:
        """Store an image whose blobs are at hand (an import): unpack its layers and record it.

        Args:
            keys: Canonical references to record it under (the first is returned).
            digest: The manifest digest.
            config_blob: The image configuration.
            layers: Openers of the layer archives, bottom first.

        Raises:
            ImagePullError: A layer does not match the configuration's ``diff_ids``.
            ImageRefused: A layer holds a forbidden entry.

        """
        config, diff_ids = parse_config(config_blob)
        if diff_ids and len(diff_ids) != len(layers):
            raise ImagePullError(f"image config lists {len(diff_ids)} layers, the manifest {len(layers)}")
        expected: builtins.list[str | None] = [*diff_ids] if diff_ids else [None] * len(layers)
        with self._pin_ids([d for d in expected if d is not None]):
            found = [
                self._unpack(source, diff_id)[0] for source, diff_id in zip(layers, expected, strict=True)
            ]
            with self._pin_ids(found):
                self._record(keys, digest, config, found)
                self.evict(keep=keys[0])
        data = self._index.read()
        return self._image(keys[0], data["images"][keys[0]])

    # -- pulling -----------------------------------------------------------------------------------------

    async def ensure(
        self,
        reference: str,
        *,
        progress: Callable[[int, int], None] | None = None,
        credentials: CredentialsLookup | None = None,
    ) -> LocalImage:
        """Return the image, pulling and unpacking it first when the store does not hold it.

        Args:
            reference: An image reference (``python:3.12``, ``host:5000/app@sha256:…``).
            progress: Called with ``(done_bytes, total_bytes)`` of the layer downloads as they advance.
            credentials: The caller's own registry credentials (a repository's secret), tried before the
                store's. An image they pull is recorded as private: a later `ensure` of it from the cache
                first asks the registry for its manifest with that caller's credentials (the store's too),
                and fails as the registry does when the caller has no access.

        Raises:
            ImageReferenceError: Malformed reference.
            ImageNotFound: No such image in the registry.
            ImageAuthError: The registry refused access.
            ImagePullError: The pull failed (network, digest mismatch, no manifest for this platform).
            ImageRefused: A layer holds an entry that escapes its directory or is forbidden.

        """
        ref = parse_reference(reference)
        lookup = self._lookup(credentials)
        found = self.get(str(ref), private=False)
        if found is not None:
            return found
        lock = self._pulls.setdefault(str(ref), asyncio.Lock())
        async with lock:
            found = self.get(str(ref), private=False)
            if found is not None:
                return found  # pulled by a concurrent ensure
            found = self.get(str(ref))
            client = RegistryClient(mirrors=self.mirrors, credentials=lookup, http=self.http)
            try:
                if found is not None:
                    # Cached, but pulled with somebody's own credentials: the registry decides access.
                    await client.get_manifest(ref)
                    return found
                private = credentials is not None and any(
                    credentials(host) is not None for host in self._hosts(client, ref)
                )
                return await self._pull(client, ref, progress, private=private)
            finally:
                self.bytes_received += client.bytes_received
                await client.aclose()

    def _lookup(self, credentials: CredentialsLookup | None) -> CredentialsLookup | None:
        """Return a look-up trying the caller's credentials first, then the store's."""
        own = self.credentials
        if credentials is None or own is None:
            return credentials or own

        def both(host: str) -> tuple[str, str] | None:
            return credentials(host) or own(host)

        return both

    @staticmethod
    def _hosts(client: RegistryClient, ref: Reference) -> set[str]:
        """Every registry host a pull of ``ref`` may send credentials to."""
        return {urlsplit(base).netloc for base in client.endpoints(ref)} | {ref.registry}

    async def _pull(
        self,
        client: RegistryClient,
        ref: Reference,
        progress: Callable[[int, int], None] | None,
        *,
        private: bool = False,
    ) -> LocalImage:
        base, body, media_type, digest = await client.get_manifest(ref)
        manifest = parse_manifest(body, media_type)
        if manifest.is_index:
            child = select_platform(manifest)
            platform_ref = Reference(ref.registry, ref.repository, None, child.digest)
            base, body, media_type, digest = await client.get_manifest(platform_ref, base=base)
            manifest = parse_manifest(body, media_type)
            if manifest.is_index or manifest.config is None:
                raise ImagePullError(f"{ref}: the index entry for this platform is not an image manifest")
        assert manifest.config is not None
        bases = [base, *(b for b in client.endpoints(ref) if b != base)]
        config_blob = await client.get_blob(bases, ref, manifest.config.digest, manifest.config.size)
        config, diff_ids = parse_config(config_blob)
        if len(diff_ids) != len(manifest.layers):
            raise ImagePullError(
                f"{ref}: config lists {len(diff_ids)} layers, the manifest {len(manifest.layers)}"
            )
        _write_private(self._blob_path(digest), body)
        _write_private(self._blob_path(manifest.config.digest), config_blob)
        with self._pin_ids(diff_ids):
            todo = [
                (layer, diff_id)
                for layer, diff_id in zip(manifest.layers, diff_ids, strict=True)
                if not self.layer_path(diff_id).is_dir()
            ]
            total = sum({diff_id: layer.size for layer, diff_id in todo}.values())
            done = 0

            def advance(count: int) -> None:
                nonlocal done
                done += count
                if progress is not None:
                    progress(done, total)

            if progress is not None:
                progress(0, total)
            semaphore = asyncio.Semaphore(self.concurrency)
            started: set[str] = set()

            async def fetch(layer: Any, diff_id: str) -> None:
                if diff_id in started:
                    return
                started.add(diff_id)
                # Another pull in this process may be fetching the same layer (images share base layers).
                async with self._layers_fetching.setdefault(diff_id, asyncio.Lock()), self._fetching(diff_id):
                    if self.layer_path(diff_id).is_dir():
                        advance(layer.size)
                        return
                    await fetch_missing(layer, diff_id)

            async def fetch_missing(layer: Any, diff_id: str) -> None:
                blob = self._blob_path(layer.digest)
                partial = self.root / "partial" / layer.digest.split(":", 1)[1]
                streamed = False
                try:
                    async with semaphore:
                        if blob.exists():
                            advance(layer.size)
                        elif partial.exists():
                            await client.download_blob(
                                bases, ref, layer.digest, layer.size, blob, partial, advance
                            )
                        else:
                            streamed = await self._download_unpacking(
                                client, bases, ref, layer, diff_id, blob, partial, advance
                            )
                    if not streamed:
                        await asyncio.to_thread(self._unpack, lambda: blob.open("rb"), diff_id)
                except (ImagePullError, ImageRefused):
                    blob.unlink(missing_ok=True)
                    raise
                blob.unlink(missing_ok=True)

            await _all([fetch(layer, diff_id) for layer, diff_id in todo])
            key = str(ref)
            await asyncio.to_thread(self._record, [key], digest, config, diff_ids, private)
            # Eviction deletes trees: off the event loop, like unpacking.
            await asyncio.to_thread(self.evict, key)
        data = self._index.read()
        return self._image(key, data["images"][key])

    @contextlib.asynccontextmanager
    async def _fetching(self, diff_id: str) -> AsyncIterator[None]:
        """Hold the layer's fetch lock file: another process on this store waits instead of fetching too."""
        fd = os.open(self.root / "locks" / f"fetch-{_layer_name(diff_id)}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.05)  # polled: a wait in a thread could not be cancelled
            yield
        finally:
            os.close(fd)

    async def _download_unpacking(
        self,
        client: RegistryClient,
        bases: Sequence[str],
        ref: Reference,
        layer: Any,
        diff_id: str,
        blob: Path,
        partial: Path,
        advance: Callable[[int], None],
    ) -> bool:
        """Download a layer while a thread unpacks the bytes as they arrive; False: unpack it from the file.

        The unpacked tree is checked against ``diff_id`` (the configuration, itself checked by its digest,
        names it), so it may take its place before the download's own digest check ends.
        """
        pipe = _Pipe()
        unpacking = asyncio.ensure_future(
            asyncio.to_thread(self._unpack, lambda: contextlib.nullcontext(cast("IO[bytes]", pipe)), diff_id)
        )
        try:
            await client.download_blob(bases, ref, layer.digest, layer.size, blob, partial, advance, pipe)
        except BaseException:
            pipe.abort()
            await asyncio.gather(unpacking, return_exceptions=True)
            raise
        pipe.finish()
        try:
            await unpacking
        except _PipeBroken:
            return False
        return True

    def import_archive(self, path: Path, reference: str | None = None) -> builtins.list[LocalImage]:
        """Import an OCI image layout (directory or tar) or a ``docker save`` archive.

        Args:
            path: The directory or archive.
            reference: The name to store a single image under; None uses the names recorded in the archive.

        Returns:
            The imported images.

        Raises:
            ImageError: The archive is not an OCI layout or a ``docker save`` archive, holds no named image
                (and no ``reference`` was given), or a layer is refused.

        """
        from tilde.server.images.archive import import_archive

        return import_archive(self, Path(path), reference)


class _PipeBroken(Exception):
    """The bytes fed to an unpacking thread stopped making one stream (a restart or a failure)."""


class _Pipe(io.RawIOBase):
    """Bytes handed from the event loop (a download) to a thread (the unpacker), in order."""

    def __init__(self) -> None:
        super().__init__()
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._buffer = memoryview(b"")
        self._ended = False
        self._broken = False

    def readable(self) -> bool:
        return True

    def write_chunk(self, data: bytes) -> None:
        if not self._broken:
            self._queue.put(data)

    def restart(self) -> None:
        self.abort()

    def abort(self) -> None:
        if not self._broken:
            self._broken = True
            self._queue.put(None)

    def finish(self) -> None:
        if not self._broken:
            self._queue.put(b"")

    def readinto(self, buffer: Any) -> int:
        while not self._buffer:
            if self._ended:
                return 0
            item = self._queue.get()
            if item is None:
                raise _PipeBroken("the download started over")
            if not item:
                self._ended = True
                return 0
            self._buffer = memoryview(item)
        size = min(len(buffer), len(self._buffer))
        buffer[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


async def _all(jobs: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run ``jobs`` together; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def layer_digest(data: bytes) -> str:
    """Return the ``sha256:`` digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
