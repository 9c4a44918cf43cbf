"""A small client of the OCI distribution API over httpx: manifests, blobs, tokens, mirrors, resumed pulls.

Authentication follows the registry's ``WWW-Authenticate`` challenge: ``Bearer`` (Docker Hub's token flow:
ask the realm for a pull token, with basic credentials when the registry host has some) or ``Basic``. Tokens
are cached per registry and repository. Docker Hub images are asked of each mirror first, then of Docker Hub.
Every blob is checked against its digest; a download cut short continues from the bytes already on disk with
a ``Range`` request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import os
import queue
import re
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from tilde.server.images.errors import ImageAuthError, ImageNotFound, ImagePullError
from tilde.server.images.manifest import MANIFEST_ACCEPT
from tilde.server.images.reference import Reference

__all__ = ["BlobSink", "RegistryClient", "registry_base_url", "validate_mirror"]

_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_CHUNK = 256 * 1024
_MAX_MANIFEST = 4 * 1024 * 1024
_WRITE_BACKLOG = 32 * 1024 * 1024
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


class BlobSink(Protocol):
    """Receives a blob's bytes while it downloads."""

    def write_chunk(self, data: bytes) -> None:
        """Take the next bytes of the blob."""

    def restart(self) -> None:
        """Forget what was written: the download starts over from the first byte."""


#: ``credentials(host)`` returns ``(username, password)`` for a registry host (``host[:port]``), or None.
Credentials = Callable[[str], "tuple[str, str] | None"]


def _is_local_host(host: str, *, private: bool) -> bool:
    """Whether ``host`` is loopback (or, with ``private``, a private-network address), by name or address."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if not private:
            return False
        try:
            infos = socket.getaddrinfo(host, None)
        except (socket.gaierror, UnicodeError):
            return False
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    return bool(addresses) and all(a.is_loopback or (private and a.is_private) for a in addresses)


def registry_base_url(host: str) -> str:
    """Return the API base URL of a registry host: plain http for loopback registries only, else https."""
    name = urlsplit(f"//{host}").hostname or host
    return f"{'http' if _is_local_host(name, private=False) else 'https'}://{host}"


def validate_mirror(url: str) -> str:
    """Check a registry mirror URL and return it without a trailing slash.

    Raises:
        ValueError: Not an http(s) URL, or plain ``http://`` to a host that is neither loopback nor on a
            private network.

    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"registry mirror {url!r} must be an http:// or https:// URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"registry mirror {url!r} must not have a query, fragment or credentials")
    if parts.scheme == "http" and not _is_local_host(parts.hostname, private=True):
        raise ValueError(
            f"registry mirror {url!r}: plain http:// only for loopback or private-network mirrors"
        )
    return url.strip().rstrip("/")


class RegistryClient:
    """Read manifests and blobs from registries.

    Args:
        mirrors: Base URLs (checked with `validate_mirror`) asked first for Docker Hub images.
        credentials: Basic-auth credentials by registry host.
        http: The httpx client to use (default: one made here, closed by `aclose`).
        retries: Attempts per blob after a connection failure (each continues where the last stopped).

    """

    def __init__(
        self,
        *,
        mirrors: Sequence[str] = (),
        credentials: Credentials | None = None,
        http: httpx.AsyncClient | None = None,
        retries: int = 4,
    ) -> None:
        self.mirrors = tuple(validate_mirror(m) for m in mirrors)
        self.credentials = credentials
        self.retries = retries
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(
            follow_redirects=True,
            timeout=httpx.Timeout(60.0, connect=15.0),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )
        self._tokens: dict[tuple[str, str], str] = {}
        #: Bytes of blob bodies received (a test and the benchmark read it).
        self.bytes_received = 0

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._own_http:
            await self.http.aclose()

    def endpoints(self, ref: Reference) -> list[str]:
        """Return the base URLs to ask for ``ref``, in order: mirrors first for Docker Hub images."""
        upstream = registry_base_url(ref.api_host)
        return [*self.mirrors, upstream] if ref.is_docker_hub else [upstream]

    def _credentials_for(self, base: str, ref: Reference) -> tuple[str, str] | None:
        if self.credentials is None:
            return None
        host = urlsplit(base).netloc
        found = self.credentials(host)
        if found is None and base == registry_base_url(ref.api_host) and host != ref.registry:
            found = self.credentials(ref.registry)  # Docker Hub credentials are filed under docker.io
        return found

    async def _token(self, challenge: str, base: str, ref: Reference) -> str:
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.get("realm")
        if not realm:
            raise ImageAuthError(f"{base} asked for a token without naming where to get it")
        query = {"scope": params.get("scope") or f"repository:{ref.repository}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        realm_parts = urlsplit(realm)
        if realm_parts.scheme not in ("http", "https"):
            raise ImageAuthError(f"{base} names a token service that is not an http(s) URL")
        auth = self._credentials_for(base, ref)
        if realm_parts.scheme == "http" and not _is_local_host(realm_parts.hostname or "", private=True):
            auth = None  # never send a password in clear text across the internet; ask anonymously
        try:
            response = await self.http.get(realm, params=query, auth=auth)
        except httpx.HTTPError as error:
            raise ImagePullError(f"cannot reach the token service of {base}: {error}") from error
        if response.status_code in (401, 403):
            raise ImageAuthError(
                f"the token service of {base} refused the credentials ({response.status_code})"
            )
        if response.status_code != 200:
            raise ImagePullError(f"the token service of {base} answered {response.status_code}")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise ImageAuthError(f"the token service of {base} returned no token")
        return token

    async def _send(
        self, base: str, ref: Reference, path: str, headers: dict[str, str], *, stream: bool = False
    ) -> httpx.Response:
        """Send a GET to ``base/v2/<repository>/<path>``, answering an auth challenge once."""
        url = f"{base}/v2/{ref.repository}/{path}"
        key = (base, ref.repository)
        basic: str | None = None
        for attempt in range(2):
            sent = dict(headers)
            if basic is not None:
                sent["Authorization"] = basic
            elif key in self._tokens:
                sent["Authorization"] = f"Bearer {self._tokens[key]}"
            request = self.http.build_request("GET", url, headers=sent)
            response = await self.http.send(request, stream=stream)
            if response.status_code != 401 or attempt == 1:
                if response.status_code in (401, 403):
                    await response.aclose()
                    raise ImageAuthError(
                        f"{base} refused access to {ref.repository} ({response.status_code})"
                    )
                return response
            challenge = response.headers.get("www-authenticate", "")
            await response.aclose()
            scheme = challenge.split(" ", 1)[0].lower()
            if scheme == "bearer":
                self._tokens[key] = await self._token(challenge, base, ref)
            elif scheme == "basic":
                creds = self._credentials_for(base, ref)
                if creds is None:
                    raise ImageAuthError(
                        f"{base} needs credentials for {ref.repository} and none are configured"
                    )
                user_pass = f"{creds[0]}:{creds[1]}".encode()
                basic = "Basic " + base64.b64encode(user_pass).decode("ascii")
            else:
                raise ImageAuthError(f"{base} asked for unsupported authentication {scheme or '(none)'}")
        raise AssertionError("unreachable")

    async def get_manifest(self, ref: Reference, *, base: str | None = None) -> tuple[str, bytes, str, str]:
        """Fetch the manifest ``ref`` names (by digest when it has one, else by tag).

        Args:
            ref: The image.
            base: Ask only this endpoint (used for the child manifests of an index).

        Returns:
            ``(endpoint base URL, body, media type, digest)``.

        Raises:
            ImageNotFound: No endpoint has it. ImageAuthError, ImagePullError: as the names say.

        """
        bases = [base] if base else self.endpoints(ref)
        last: Exception | None = None
        for candidate in bases:
            try:
                response = await self._send(
                    candidate, ref, f"manifests/{ref.manifest_ref}", {"Accept": MANIFEST_ACCEPT}
                )
            except httpx.HTTPError as error:
                last = ImagePullError(f"cannot reach {candidate}: {error}")
                continue
            except ImageAuthError as error:
                last = error
                continue
            if response.status_code == 404:
                last = ImageNotFound(f"{ref} not found at {candidate}")
                continue
            if response.status_code != 200:
                last = ImagePullError(
                    f"{candidate} answered {response.status_code} for the manifest of {ref}"
                )
                continue
            body = response.content
            if len(body) > _MAX_MANIFEST:
                raise ImagePullError(f"manifest of {ref} is larger than {_MAX_MANIFEST} bytes")
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if ref.digest is not None and digest != ref.digest:
                raise ImagePullError(
                    f"manifest of {ref} from {candidate} does not match its digest ({digest})"
                )
            return candidate, body, response.headers.get("content-type", ""), digest
        assert last is not None
        raise last

    async def get_blob(self, bases: Sequence[str], ref: Reference, digest: str, size: int) -> bytes:
        """Fetch a small blob (an image config) into memory and check its digest."""
        last: Exception | None = None
        for base in bases:
            try:
                response = await self._send(base, ref, f"blobs/{digest}", {})
            except httpx.HTTPError as error:
                last = ImagePullError(f"cannot reach {base}: {error}")
                continue
            if response.status_code != 200:
                last = ImagePullError(f"{base} answered {response.status_code} for blob {digest}")
                continue
            body = response.content
            if "sha256:" + hashlib.sha256(body).hexdigest() != digest or len(body) != size:
                raise ImagePullError(f"blob {digest} from {base} does not match its digest")
            return body
        assert last is not None
        raise last

    async def download_blob(
        self,
        bases: Sequence[str],
        ref: Reference,
        digest: str,
        size: int,
        dest: Path,
        partial: Path,
        progress: Callable[[int], None] | None = None,
        sink: BlobSink | None = None,
    ) -> None:
        """Download a blob to ``dest``, continuing ``partial`` if an earlier attempt left one.

        Args:
            bases: Endpoints to try, in order (a connection failure retries the same endpoint with Range).
            ref: The image (its repository names the blob's place).
            digest: The blob's digest; checked before ``dest`` appears.
            size: The blob's size from the manifest; more bytes than that fail the download.
            dest: Where the verified blob goes.
            partial: The file that collects the bytes as they arrive (kept on failure, for the next try).
            progress: Called with the number of new bytes (resumed bytes are reported at the start).
            sink: Also receives the bytes as they arrive (to unpack while downloading); told to restart when
                the download starts over.

        Raises:
            ImagePullError: Failure after every retry, or a digest mismatch (the partial file is removed).

        """
        hasher = hashlib.sha256()
        have = 0
        if partial.exists():
            have = await asyncio.to_thread(_hash_file, partial, hasher)
            if have > size:
                partial.unlink()
                hasher, have = hashlib.sha256(), 0
        if progress is not None and have:
            progress(have)
        failures = 0
        base_index = 0
        last_error = ""
        while have < size:
            if base_index >= len(bases):
                raise ImagePullError(f"blob {digest} of {ref}: {last_error}")
            base = bases[base_index]
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                response = await self._send(base, ref, f"blobs/{digest}", headers, stream=True)
            except httpx.HTTPError as error:
                failures, last_error = failures + 1, f"cannot reach {base}: {error}"
                if failures > self.retries:
                    base_index, failures = base_index + 1, 0
                continue
            try:
                if response.status_code == 200 and have:
                    hasher, have = hashlib.sha256(), 0  # the server ignored the Range: start over
                    if sink is not None:
                        sink.restart()
                    partial.unlink(missing_ok=True)
                elif response.status_code not in (200, 206):
                    last_error = f"{base} answered {response.status_code}"
                    base_index, failures = base_index + 1, 0
                    continue
                writer = _BackgroundWriter(partial, hasher)
                try:
                    async for chunk in response.aiter_bytes(_CHUNK):
                        have += len(chunk)
                        if have > size:
                            await writer.aclose()
                            partial.unlink(missing_ok=True)
                            raise ImagePullError(f"blob {digest} of {ref} is larger than its manifest says")
                        await writer.write(chunk)
                        if sink is not None:
                            sink.write_chunk(chunk)
                        self.bytes_received += len(chunk)
                        if progress is not None:
                            progress(len(chunk))
                finally:
                    await writer.aclose()
            except httpx.HTTPError as error:
                failures, last_error = failures + 1, f"connection to {base} failed: {error}"
                if failures > self.retries:
                    base_index, failures = base_index + 1, 0
            finally:
                await response.aclose()
        if "sha256:" + hasher.hexdigest() != digest:
            partial.unlink(missing_ok=True)
            raise ImagePullError(
                f"blob {digest} of {ref} does not match its digest; the download is discarded"
            )
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT, 0o600))  # an empty blob has no file yet
        os.replace(partial, dest)


class _BackgroundWriter:
    """Append a download's chunks to its file and hash them in a thread, off the event loop.

    At most ``_WRITE_BACKLOG`` bytes wait in memory: past that, `write` waits for the disk.
    """

    def __init__(self, path: Path, hasher: Any) -> None:
        self._path = path
        self._file = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        self._hasher = hasher
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._pending = 0
        self._drained = threading.Condition()
        self._error: OSError | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="image-blob-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (chunk := self._queue.get()) is not None:
                if self._error is None:
                    try:
                        self._file.write(chunk)
                        self._hasher.update(chunk)
                    except OSError as error:
                        self._error = error
                with self._drained:
                    self._pending -= len(chunk)
                    self._drained.notify_all()
        finally:
            self._file.close()

    def _wait_below(self, limit: int) -> None:
        with self._drained:
            self._drained.wait_for(lambda: self._pending <= limit)

    async def write(self, chunk: bytes) -> None:
        """Queue ``chunk``; wait while too many bytes are still queued."""
        with self._drained:
            self._pending += len(chunk)
            backlog = self._pending
        self._queue.put(chunk)
        if backlog > _WRITE_BACKLOG:
            await asyncio.to_thread(self._wait_below, _WRITE_BACKLOG // 2)

    async def aclose(self) -> None:
        """Write what is queued and close the file (again: nothing); raise a write error."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise ImagePullError(f"cannot write {self._path}: {self._error.strerror or self._error}")


def _hash_file(path: Path, hasher: Any) -> int:
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return size
