"""`TildeFileSystem`: ``tilde://ORG/REPO[@REF]/PATH`` for every tool that opens URLs through fsspec.

Install the extra (``pip install "tilde-data[fsspec]"``) and pandas, pyarrow, DuckDB, Dask and the rest open
``tilde://`` URLs with no import: the ``fsspec.specs`` entry point registers the protocol. Credentials come
from the SDK's usual chain, or from the storage options ``api_key`` / ``endpoint_url`` (or a ready
``client``).

Reads without ``@REF`` see the latest commit (or, inside a transaction, the transaction's own session);
reads at ``@REF`` see that commit and never change, so fsspec's caches may keep them.

Writes go through sessions. Outside a transaction every write (a file closed, ``pipe``, ``rm``, ``cp``, a
``put``) is committed on its own, with `TildeFileSystem.commit_message`; inside ``with fs.transaction:``
all writes share one session per repository and are committed together at the end of the block, or rolled
back when it raises.

Example:
    >>> import fsspec  # doctest: +SKIP
    >>> with fsspec.open("tilde://acme/data/hello.txt", "wb") as f:  # doctest: +SKIP
    ...     f.write(b"hi")
    >>> fsspec.open("tilde://acme/data/hello.txt").open().read()  # doctest: +SKIP
    b'hi'

"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from fsspec.spec import AbstractFileSystem  # type: ignore[import-untyped]

from tilde.core.errors import APIError, NotFoundError
from tilde.data._download_file import DEFAULT_WORKERS
from tilde.data._fsspec_parts import (
    TildeFile,
    TildeTransaction,
    add_directories,
    entry_name,
    file_info,
    missing,
    run_parallel,
)
from tilde.data.client import Client
from tilde.data.objects import ReadOnlyObjects, SessionObjects
from tilde.data.sessions import Session
from tilde.data.urls import SCHEME, TildeURL, parse_url

__all__ = ["DEFAULT_COMMIT_MESSAGE", "TildeFile", "TildeFileSystem", "TildeTransaction"]

#: The commit message of writes when none is set.
DEFAULT_COMMIT_MESSAGE = "Write through the tilde:// filesystem"

_LIST_PAGE = 1000
_RANGE_NOT_SATISFIABLE = 416


class TildeFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """The ``tilde://`` filesystem: objects of Tilde repositories as files, prefixes as directories.

    Paths are ``ORG/REPO[@REF]/PATH``, with or without ``tilde://`` in front. Listing and reading work
    anywhere inside a repository; writing needs a path without ``@REF``.

    Args:
        client: The client to use; by default one is made from ``api_key``, ``endpoint_url`` and the SDK's
            credential chain.
        api_key: The API key (default: the credential chain).
        endpoint_url: The server (default: the credential chain).
        commit_message: The message of the commits writes make (see `commit_message`).
        **storage_options: Passed on to `fsspec.spec.AbstractFileSystem` (``skip_instance_cache`` …).

    Example:
        >>> fs = TildeFileSystem(commit_message="nightly export")  # doctest: +SKIP
        >>> with fs.transaction:  # doctest: +SKIP
        ...     fs.pipe_file("acme/data/a.txt", b"a")
        ...     fs.pipe_file("acme/data/b.txt", b"b")

    """

    protocol = SCHEME
    root_marker = ""
    transaction_type = TildeTransaction

    def __init__(
        self,
        *,
        client: Client[Any] | None = None,
        api_key: str | None = None,
        endpoint_url: str | None = None,
        commit_message: str | None = None,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        if client is None:
            client = Client(api_key=api_key, endpoint_url=endpoint_url)
            # Instances live in fsspec's cache and are dropped without notice: close our own client with them.
            self._closer: weakref.finalize[Any, Any] | None = weakref.finalize(self, client.close)
        else:
            self._closer = None
        #: The client requests go through.
        self.client: Client[Any] = client
        #: Files `put` uploads at once.
        self.max_workers = 8
        self._local = threading.local()
        #: The message of every commit this filesystem makes; change it between writes as needed.
        self.commit_message: str = commit_message or DEFAULT_COMMIT_MESSAGE

    def close(self) -> None:
        """Close the client this filesystem made (a client passed in is left to its owner)."""
        if self._closer is not None:
            self._closer()

    # -- paths ---------------------------------------------------------------------------------------------

    def _url(self, path: str) -> TildeURL:
        """Parse a path (with or without the protocol) into a location; a trailing ``/`` is dropped."""
        stripped = self._strip_protocol(path)
        return parse_url(f"{SCHEME}://{stripped}")

    def _writable(self, path: str) -> TildeURL:
        url = self._url(path)
        if url.ref:
            raise ValueError(f"{path!r}: cannot write at a ref; write to tilde://{url.repo_path}/… instead")
        if not url.path:
            raise ValueError(f"{path!r}: expected an object path inside the repository")
        return url

    # -- sessions ------------------------------------------------------------------------------------------

    def _read_objects(self, url: TildeURL) -> ReadOnlyObjects | SessionObjects:
        if url.ref is None and self._intrans and self._transaction is not None:
            session: Session | None = self._transaction.sessions.get(url.repo_path)
            if session is not None:
                return session.objects
        return ReadOnlyObjects(self.client, url.org, url.repo, ref=url.ref)

    @contextmanager
    def _writing(self, url: TildeURL) -> Iterator[Session]:
        """Yield the session to write ``url``'s repository in: the transaction's, or one committed on exit."""
        if self._intrans:
            transaction: TildeTransaction = self.transaction
            session = transaction.sessions.get(url.repo_path)
            if session is None:
                session = self.client.repository(url.repo_path).session()
                transaction.sessions[url.repo_path] = session
            yield session
            return
        with self.client.repository(url.repo_path).session() as session:
            yield session
            session.commit(self.commit_message)

    # -- listing -------------------------------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """List a directory (a prefix) one level deep, or return a file's own entry.

        Args:
            path: ``ORG/REPO[@REF][/PREFIX]``.
            detail: Return dicts with ``name``, ``size``, ``type`` (and ``etag``, ``last_modified``,
                ``content_type`` for files) instead of names.
            **kwargs: Ignored (fsspec's signature).

        Returns:
            The entries, in path order.

        Raises:
            FileNotFoundError: Nothing exists at ``path``.

        """
        url = self._url(path)
        prefix = url.path + "/" if url.path else ""
        entries: list[dict[str, Any]] = []
        for item in self._read_objects(url).list(prefix=prefix or None, delimiter="/", page_size=_LIST_PAGE):
            if item.type == "prefix":
                name = entry_name(url, item.path.rstrip("/"))
                entries.append({"name": name, "size": 0, "type": "directory"})
            else:
                entries.append(file_info(url, item.path, item.entry))
        if not entries and url.path:
            entries = [self.info(path)]
            if entries[0]["type"] != "file":
                entries = []
        return entries if detail else [entry["name"] for entry in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """Describe a file (one ``HEAD``) or a directory (a prefix with objects under it).

        Args:
            path: ``ORG/REPO[@REF][/PATH]``.
            **kwargs: Ignored (fsspec's signature).

        Returns:
            ``name``, ``size``, ``type`` (``"file"`` or ``"directory"``), and for files ``etag`` and
            ``content_type``.

        Raises:
            FileNotFoundError: Neither an object nor a non-empty prefix.

        """
        url = self._url(path)
        objects = self._read_objects(url)
        if not url.path:
            return {"name": entry_name(url, ""), "size": 0, "type": "directory"}
        try:
            head = objects.head(url.path)
        except NotFoundError:
            pass
        else:
            return {
                "name": entry_name(url, url.path),
                "size": head.content_length or 0,
                "type": "file",
                "etag": head.etag,
                "content_type": head.content_type,
            }
        if any(True for _ in objects.list(prefix=url.path + "/", amount=1)):
            return {"name": entry_name(url, url.path), "size": 0, "type": "directory"}
        raise missing(url)

    def modified(self, path: str) -> datetime:
        """Return when the object at ``path`` was last written (from its listing entry).

        Args:
            path: ``ORG/REPO[@REF]/PATH``.

        Returns:
            The time of the write, timezone-aware.

        Raises:
            FileNotFoundError: No such object, or the server does not report the time.

        """
        url = self._url(path)
        if url.path:
            # The object itself sorts first among the paths it prefixes.
            for item in self._read_objects(url).list(prefix=url.path, amount=1):
                if item.path == url.path and item.entry is not None and item.entry.last_modified is not None:
                    return item.entry.last_modified
        raise missing(url)

    def created(self, path: str) -> datetime:
        """Return when the object's current version was written (objects are replaced whole).

        Args:
            path: ``ORG/REPO[@REF]/PATH``.

        Returns:
            The same as `modified`.

        """
        return self.modified(path)

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Every file under ``path`` (and the directories, with ``withdirs``), from one flat listing.

        Args:
            path: ``ORG/REPO[@REF][/PREFIX]``, or a file (which finds itself).
            maxdepth: Only this many levels below ``path``.
            withdirs: Include the directories between ``path`` and the files.
            detail: Return ``{name: info}`` instead of a sorted list of names.
            **kwargs: Ignored (fsspec's signature).

        Returns:
            Names, or a dict of infos by name.

        Raises:
            ValueError: ``maxdepth`` is below 1.

        """
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        url = self._url(path)
        prefix = url.path + "/" if url.path else ""
        found: dict[str, dict[str, Any]] = {}
        for item in self._read_objects(url).list(prefix=prefix or None, page_size=_LIST_PAGE):
            if item.type != "object":
                continue
            parts = item.path[len(prefix) :].split("/")
            if maxdepth is not None and len(parts) > maxdepth:
                if withdirs:
                    add_directories(found, url, prefix, parts[:maxdepth])
                continue
            if withdirs:
                add_directories(found, url, prefix, parts[:-1])
            found[entry_name(url, item.path)] = file_info(url, item.path, item.entry)
        if not found and url.path:
            try:
                entry = self.info(path)
            except FileNotFoundError:
                entry = None
            if entry is not None and entry["type"] == "file":
                found[entry["name"]] = entry
        names = sorted(found)
        return {name: found[name] for name in names} if detail else names

    # -- reading -------------------------------------------------------------------------------------------

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Read a file, or bytes ``[start, end)`` of it in one ranged GET (negatives count from the end).

        Args:
            path: ``ORG/REPO[@REF]/PATH``.
            start: The first byte (default 0).
            end: One past the last byte (default: the end).
            **kwargs: Ignored (fsspec's signature).

        Returns:
            The bytes.

        Raises:
            FileNotFoundError: No such object.

        """
        url = self._url(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = self.info(path)["size"]
            start = max(size + start, 0) if start is not None and start < 0 else start
            end = max(size + end, 0) if end is not None and end < 0 else end
        first = start or 0
        if end is not None and end <= first:
            return b""
        byte_range = None if first == 0 and end is None else (first, None if end is None else end - 1)
        try:
            with self._read_objects(url).get(url.path, cache=False, byte_range=byte_range) as reader:
                return reader.read()
        except NotFoundError as error:
            raise missing(url) from error
        except APIError as error:
            if error.status_code == _RANGE_NOT_SATISFIABLE:
                return b""  # the range starts at or past the end, as a file read there would
            raise

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> TildeFile:
        if mode != "rb":
            self._writable(path)
        if mode == "xb":
            self._refuse_existing(path)
            mode = "wb"
        return TildeFile(
            self,
            path,
            mode,
            block_size=block_size,
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )

    def get_file(
        self, rpath: str, lpath: str, callback: Any = None, outfile: Any = None, **kwargs: Any
    ) -> None:
        """Download one object into a local file (parallel ranged GETs, see `download_file`) or ``outfile``.

        Args:
            rpath: ``ORG/REPO[@REF]/PATH``.
            lpath: The local file (its folder is created when missing).
            callback: Ignored.
            outfile: An open binary file to write to instead of ``lpath``.
            **kwargs: Ignored (fsspec's signature).

        Raises:
            FileNotFoundError: No such object.

        """
        deferred = getattr(self._local, "gets", None)
        if deferred is not None and outfile is None:
            # `get` runs them together, each file's ranges one after another (the files are the parallelism).
            deferred.append(partial(self._download, rpath, lpath, None, 1))
            return
        self._download(rpath, lpath, outfile)

    def _download(self, rpath: str, lpath: str, outfile: Any, workers: int | None = None) -> None:
        url = self._url(rpath)
        try:
            objects = self._read_objects(url)
            if outfile is not None:
                with objects.get(url.path, cache=False) as reader:
                    shutil.copyfileobj(reader, outfile)
                return
            os.makedirs(os.path.dirname(os.path.abspath(lpath)), exist_ok=True)
            # Ranged GETs in parallel, written in place into a temporary file renamed when complete.
            objects.download_file(
                url.path, lpath, max_workers=workers or min(self.max_workers, DEFAULT_WORKERS)
            )
        except NotFoundError as error:
            if url.path and self.isdir(rpath):
                os.makedirs(lpath, exist_ok=True)
                return
            raise missing(url) from error

    def get(self, rpath: Any, lpath: Any, recursive: bool = False, **kwargs: Any) -> None:
        """Download objects into local files (fsspec's rules for names), in parallel.

        Args:
            rpath: Remote file(s) or folder(s).
            lpath: The local destination(s).
            recursive: Walk remote folders.
            **kwargs: Passed on to `fsspec.spec.AbstractFileSystem.get`.

        """
        jobs: list[Callable[[], None]] = []
        self._local.gets = jobs
        try:
            # fsspec works out the names and makes the local folders; get_file only records the downloads.
            super().get(rpath, lpath, recursive=recursive, **kwargs)
        finally:
            self._local.gets = None
        if len(jobs) == 1 and isinstance(jobs[0], partial):
            # One file: its ranges are the parallelism.
            single = jobs[0]
            jobs = [partial(single.func, *single.args[:3], min(self.max_workers, DEFAULT_WORKERS))]
        run_parallel(list(jobs), max_workers=self.max_workers)

    # -- writing -------------------------------------------------------------------------------------------

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Write ``value`` as the object at ``path`` (committed at once outside a transaction).

        Args:
            path: ``ORG/REPO/PATH`` (no ``@REF``).
            value: The bytes.
            mode: ``"overwrite"``, or ``"create"`` to refuse an existing object (checked before the write,
                not atomically with it).
            **kwargs: Ignored (fsspec's signature).

        Raises:
            FileExistsError: ``mode="create"`` and the object exists.
            ValueError: ``path`` has a ref or no object path, or ``mode`` is neither of the above.

        """
        if mode not in ("overwrite", "create"):
            raise ValueError(f"tilde:// supports mode 'overwrite' or 'create', not {mode!r}")
        url = self._writable(path)
        if mode == "create":
            self._refuse_existing(path)
        with self._writing(url) as session:
            session.objects.put(url.path, bytes(value))
        self.invalidate_cache(path)

    def _refuse_existing(self, path: str) -> None:
        if self.exists(path):
            raise FileExistsError(f"{SCHEME}://{self._strip_protocol(path)} exists")

    def put_file(
        self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        """Upload a local file as the object at ``rpath`` (committed at once outside a transaction).

        Args:
            lpath: The local file; a folder makes nothing (directories are implied by paths).
            rpath: ``ORG/REPO/PATH`` (no ``@REF``).
            callback: Ignored.
            mode: ``"overwrite"`` (the only one supported).
            **kwargs: Ignored (fsspec's signature).

        """
        if os.path.isdir(lpath):
            return
        url = self._writable(rpath)
        deferred = getattr(self._local, "puts", None)
        if deferred is not None:
            deferred.append((lpath, url))  # `put` uploads them together
            return
        with self._writing(url) as session:
            session.objects.put(url.path, Path(lpath))

    def put(self, lpath: Any, rpath: Any, recursive: bool = False, **kwargs: Any) -> None:
        """Upload local files (fsspec's rules for names), in parallel; outside a transaction in one commit.

        Args:
            lpath: Local file(s) or folder(s).
            rpath: The destination(s).
            recursive: Walk local folders.
            **kwargs: Passed on to `fsspec.spec.AbstractFileSystem.put`.

        """
        jobs: list[tuple[str, TildeURL]] = []
        self._local.puts = jobs
        try:
            # fsspec works out the names; put_file only records them.
            super().put(lpath, rpath, recursive=recursive, **kwargs)
        finally:
            self._local.puts = None
        if not jobs:
            return
        with contextlib.ExitStack() as stack:
            if not self._intrans:
                stack.enter_context(self.transaction)
            sessions: dict[str, Session] = {}
            for _, url in jobs:
                if url.repo_path not in sessions:
                    sessions[url.repo_path] = stack.enter_context(self._writing(url))
            run_parallel(
                [partial(sessions[url.repo_path].objects.put, url.path, Path(local)) for local, url in jobs],
                max_workers=self.max_workers,
            )

    def rm_file(self, path: str) -> None:
        """Delete one object (committed at once outside a transaction).

        Args:
            path: ``ORG/REPO/PATH``.

        """
        self.rm(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Delete objects; outside a transaction, everything in one commit per repository.

        Args:
            path: One path or a list of them.
            recursive: Delete everything under directories too.
            maxdepth: With ``recursive``, only this many levels deep.

        Raises:
            FileNotFoundError: A path names nothing.
            IsADirectoryError: A path names a directory and ``recursive`` is false.

        """
        paths = [path] if isinstance(path, str) else list(path)
        by_repo: dict[str, tuple[TildeURL, list[str]]] = {}
        for item in paths:
            url = self._writable(item) if not recursive else self._url(item)
            if url.ref:
                raise ValueError(f"{item!r}: cannot delete at a ref")
            kind = self.info(item)["type"]
            if kind == "directory" and not recursive:
                raise IsADirectoryError(f"{item!r} is a directory; pass recursive=True")
            names = (
                self.find(item, maxdepth=maxdepth) if kind == "directory" else [self._strip_protocol(item)]
            )
            targets = by_repo.setdefault(url.repo_path, (url, []))[1]
            targets.extend(self._url(name).path for name in names)
        for url, targets in by_repo.values():
            if targets:
                with self._writing(url) as session:
                    session.objects.delete_many(targets)
        self.invalidate_cache()

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy one object: server-side within a repository, through the client otherwise.

        Args:
            path1: The source, ``ORG/REPO[@REF]/PATH``.
            path2: The destination, ``ORG/REPO/PATH``.
            **kwargs: Ignored (fsspec's signature).

        Raises:
            FileNotFoundError: The source does not exist.

        """
        source, destination = self._url(path1), self._writable(path2)
        if source.ref is None and source.repo_path == destination.repo_path:
            with self._writing(destination) as session:
                try:
                    session.objects.copy(source.path, destination.path)
                except NotFoundError as error:
                    raise missing(source) from error
        else:
            self.pipe_file(path2, self.cat_file(path1))
        self.invalidate_cache(path2)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Do nothing: directories exist when objects are under them.

        Args:
            path: Ignored.
            exist_ok: Ignored.

        """

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Do nothing: directories exist when objects are under them.

        Args:
            path: Ignored.
            create_parents: Ignored.
            **kwargs: Ignored.

        """
