"""Object access: read-only views of a commit, and read-write access inside a session."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tilde.data.models import CopyObjectResult, ListingEntry, MultipartUpload, ObjectMetadata, PutObjectResult
from tilde.data.object_reader import ObjectReader
from tilde.data.plugins import collect_upload_strategies, make_plugin_manager
from tilde.data.upload_source import UploadData, UploadSource
from tilde.data.upload_strategies import UploadRequest, UploadSettings, UploadStrategy, run_upload

if TYPE_CHECKING:
    from tilde.core import Client as CoreClient
    from tilde.core.pagination import PaginatedIterator
    from tilde.data.transfers import FolderTransferResult, TransferProgress

__all__ = ["ReadOnlyObjects", "SessionObjects"]

#: The most paths one ``POST R/objects/delete`` accepts.
DELETE_MANY_LIMIT = 1000


class _ObjectReads:
    """Listing and reading, scoped by the extra query parameters of the concrete class."""

    def __init__(self, client: CoreClient, org: str, repo: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self._repository_path = f"/organizations/{org}/repositories/{repo}"

    def _scope(self) -> dict[str, str]:
        raise NotImplementedError

    def list(
        self,
        *,
        prefix: str | None = None,
        delimiter: str | None = None,
        after: str | None = None,
        amount: int | None = None,
        page_size: int | None = None,
    ) -> PaginatedIterator[ListingEntry]:
        """List objects in path order.

        Args:
            prefix: Only paths starting with this.
            delimiter: Collapse paths sharing a prefix up to the next delimiter into one ``"prefix"`` entry.
            after: Start strictly after this path.
            amount: Stop after this many entries in total.
            page_size: Entries per request (server maximum 1000).

        Returns:
            A lazy, single-pass iterator of `ListingEntry`.

        """
        params: dict[str, Any] = dict(self._scope())
        if prefix:
            params["prefix"] = prefix
        if delimiter:
            params["delimiter"] = delimiter
        return self._client._paginate(
            f"{self._repository_path}/objects",
            ListingEntry.from_dict,
            params=params,
            amount=amount,
            page_size=page_size,
            after=after,
        )

    def get(
        self, path: str, *, cache: bool = True, byte_range: tuple[int, int | None] | None = None
    ) -> ObjectReader:
        """Open an object for reading; no request is made until the reader is used.

        Args:
            path: The object path.
            cache: Keep the whole body in memory after the first full ``read()``.
            byte_range: ``(start, end)`` inclusive, or ``(start, None)`` to the end.

        Returns:
            An `ObjectReader`.

        """
        return ObjectReader(
            self._client,
            f"{self._repository_path}/object",
            {"path": path, **self._scope()},
            cache=cache,
            byte_range=byte_range,
        )

    def head(self, path: str) -> ObjectMetadata:
        """Fetch an object's metadata without its bytes.

        Args:
            path: The object path.

        Returns:
            The ETag, content type, size and reproducibility flag.

        Raises:
            NotFoundError: No such object.

        """
        response = self._client._head(
            f"{self._repository_path}/object", params={"path": path, **self._scope()}
        )
        return ObjectMetadata.from_headers(response.headers)

    def download_file(
        self,
        path: str,
        local_path: str | os.PathLike[str],
        *,
        max_workers: int = 4,
        progress: TransferProgress | None = None,
    ) -> int:
        """Download one object into a local file, with parallel ranged GETs written in place.

        The file is written as ``<local_path>.tilde-download`` (preallocated, each range written at its
        offset as it arrives) and renamed over ``local_path`` when complete. A dropped connection resumes
        from the last byte received; a call interrupted for good (a crash, an outage longer than the
        retries) leaves that file and a small ``.tilde-download.json`` beside it, and the next call for the
        same destination fetches only the ranges still missing - unless the object changed meanwhile.

        Args:
            path: The object path.
            local_path: The file to write (replaced if it exists); an existing directory gets the object's
                last path segment as the file name.
            max_workers: Ranged GETs in flight at once.
            progress: Told the total (one file, its size), then the bytes as they land.

        Returns:
            The number of bytes written.

        Raises:
            NotFoundError: No such object.
            ObjectChangedError: The object was replaced while it was being downloaded.
            ValueError: ``max_workers`` is below 1.

        Example:
            >>> repo.objects.download_file("models/weights.bin", "weights.bin")  # doctest: +SKIP

        """
        from tilde.data._download_file import download_file

        return download_file(self, path, local_path, max_workers=max_workers, progress=progress)

    def download(
        self,
        prefix: str,
        local_dir: str | os.PathLike[str],
        *,
        progress: TransferProgress | None = None,
        max_workers: int = 8,
    ) -> FolderTransferResult:
        """Write every object under ``prefix`` into ``local_dir``, at its path relative to ``prefix``.

        ``prefix`` names a folder: ``"data"`` and ``"data/"`` both download ``data/…`` (not ``database/…``);
        ``""`` downloads everything. Objects stream into a temporary file beside their destination, renamed
        into place when complete; existing files are replaced, directories created as needed.

        Args:
            prefix: The folder to download.
            local_dir: Where to write it (created when missing).
            progress: Told the totals, then each file and chunk as it lands (see `TransferProgress`).
            max_workers: Objects downloaded at once.

        Returns:
            How many files and bytes were written, and their object paths.

        Raises:
            ValueError: An object path would land outside ``local_dir`` (nothing is written for it), or
                ``max_workers`` is below 1.

        Example:
            >>> repo.commits.get(commit_id).objects.download("models/", "out/models")  # doctest: +SKIP

        """
        from tilde.data._folder_download import download_folder

        return download_folder(self, prefix, local_dir, progress=progress, max_workers=max_workers)


class ReadOnlyObjects(_ObjectReads):
    """Read-only access to a repository's objects, as of one commit.

    Args:
        client: The client.
        org: Organization name.
        repo: Repository name.
        ref: The commit (or ref) to read; ``None`` reads the latest commit. Unlike the published SDK, a
            `Commit`'s ``objects`` passes its own id here, so historic reads see that commit's state.

    """

    def __init__(self, client: CoreClient, org: str, repo: str, *, ref: str | None = None) -> None:
        super().__init__(client, org, repo)
        self._ref = ref

    @property
    def ref(self) -> str | None:
        """The commit this view reads, ``None`` for the latest."""
        return self._ref

    def _scope(self) -> dict[str, str]:
        return {"ref": self._ref} if self._ref else {}

    def __repr__(self) -> str:
        suffix = f", ref={self._ref!r}" if self._ref else ""
        return f"ReadOnlyObjects({self._org}/{self._repo}{suffix})"


class SessionObjects(_ObjectReads):
    """Objects as seen and changed by one session (reads include the session's staged changes).

    Args:
        client: The client.
        org: Organization name.
        repo: Repository name.
        session_id: The session.

    """

    def __init__(self, client: CoreClient, org: str, repo: str, session_id: str) -> None:
        super().__init__(client, org, repo)
        self._session_id = session_id

    def _scope(self) -> dict[str, str]:
        return {"session_id": self._session_id}

    def __repr__(self) -> str:
        return f"SessionObjects(session_id={self._session_id!r})"

    def put(
        self, path: str, data: UploadData, *, content_type: str = "application/octet-stream"
    ) -> PutObjectResult:
        """Upload an object into the session.

        The upload strategy is chosen per object (see `tilde.data.hookspecs`): by default a single presigned
        PUT for known sizes below the client's threshold (64 MiB), otherwise a parallel multipart upload.

        Args:
            path: The object path (no leading ``/``).
            data: ``bytes``/``bytearray``/``memoryview``, a ``pathlib.Path`` (opened and closed here), a
                binary file object (read from its current position), or an iterable of ``bytes``.
            content_type: Recorded with the object.

        Returns:
            The staged object's path and ETag.

        Raises:
            TransportError: A presigned upload failed.
            TypeError: ``data`` is not one of the accepted types.

        """
        source = UploadSource(data)
        try:
            return run_upload(
                _upload_strategies(self._client), self._upload_request(path, source, content_type)
            )
        finally:
            source.close()

    def start_upload(self, path: str) -> MultipartUpload:
        """Start a multipart upload whose bytes `resume_upload` sends, from this process or any other.

        For uploads that must survive the uploading process: keep the returned value (``to_dict``) where a
        new process finds it, then call `resume_upload`; if the process dies, a new one attaches to the
        session (`Repository.attach`) and calls `resume_upload` again with the same data, which sends only
        the parts the server does not hold yet. The part size is the client's (``multipart_part_size``).

        Args:
            path: The object path.

        Returns:
            The upload's path, id and token.

        Raises:
            APIError: The server refused (a 501: it has no multipart uploads).

        Example:
            >>> upload = session.objects.start_upload("data/big.bin")  # doctest: +SKIP
            >>> Path("upload.json").write_text(json.dumps(upload.to_dict()))  # doctest: +SKIP
            >>> session.objects.resume_upload(upload, Path("big.bin"))  # doctest: +SKIP

        """
        from tilde.data._multipart import initiate
        from tilde.data.upload_strategies import StrategyDeclined

        try:
            return initiate(self._upload_request(path, UploadSource(b""), "application/octet-stream"))
        except StrategyDeclined as declined:
            cause = declined.__cause__
            raise cause if cause is not None else declined from None

    def resume_upload(
        self, upload: MultipartUpload, data: UploadData, *, content_type: str = "application/octet-stream"
    ) -> PutObjectResult:
        """Send the parts of ``upload`` the server does not hold yet, then complete it (stage the object).

        The server lists the parts it received; those whose size and SHA-256 match ``data`` are kept, every
        other part is sent (in parallel, each read from a file at its offset). On failure nothing is aborted,
        so the same call can be made again, from this process or another.

        Args:
            upload: From `start_upload` (or ``MultipartUpload.from_dict`` of what it returned).
            data: The same bytes the upload is of (a ``pathlib.Path`` or a seekable file reads only the parts
                it sends; other sources are read through, hashing the parts the server holds).
            content_type: Recorded with the object.

        Returns:
            The staged object's path and ETag.

        Raises:
            NotFoundError: The upload is unknown (already completed or aborted).
            TransportError: A part could not be sent.

        """
        from tilde.data._multipart import resume_multipart

        source = UploadSource(data)
        try:
            return resume_multipart(self._upload_request(upload.path, source, content_type), upload)
        finally:
            source.close()

    def _upload_request(self, path: str, source: UploadSource, content_type: str) -> UploadRequest:
        return UploadRequest(
            client=self._client,
            repository_path=self._repository_path,
            session_id=self._session_id,
            path=path,
            source=source,
            content_type=content_type,
            settings=_upload_settings(self._client),
        )

    def upload_folder(
        self,
        local_dir: str | os.PathLike[str],
        prefix: str = "",
        *,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        progress: TransferProgress | None = None,
        max_workers: int = 8,
    ) -> FolderTransferResult:
        """Upload the contents of ``local_dir`` under ``prefix`` (not the folder itself), concurrently.

        ``local_dir/a/b.txt`` becomes ``prefix/a/b.txt`` (a ``/`` is added after a non-empty prefix).
        Small files travel many to a request when the server offers batch uploads (one atomic request per
        batch; see `tilde.data.batch_uploads`), otherwise and for large files through `put`. Symbolic
        links to directories are not followed; a link to a file is uploaded only when its target lies
        inside ``local_dir``. Nothing is committed: commit the session afterwards.

        Args:
            local_dir: The folder to upload.
            prefix: Where its contents go in the repository.
            include: Upload only files whose path relative to ``local_dir`` (with ``/`` separators)
                matches one of these `fnmatch` patterns, where ``*`` also matches ``/`` (``"*.csv"``
                takes CSV files at any depth).
            exclude: Skip files whose relative path matches one of these patterns.
            progress: Told the totals, then files and bytes as they are uploaded (see `TransferProgress`).
            max_workers: Requests in flight at once.

        Returns:
            How many files and bytes were uploaded, and their object paths.

        Raises:
            NotADirectoryError: ``local_dir`` is not a folder.
            ValueError: A file name is not valid UTF-8, or ``max_workers`` is below 1.

        Example:
            >>> with repo.session() as session:  # doctest: +SKIP
            ...     session.objects.upload_folder("build/", "releases/1.0/", exclude=["*.tmp"])
            ...     session.commit("release 1.0")

        """
        from tilde.data._folder_upload import upload_folder

        return upload_folder(
            self,
            self._session_id,
            local_dir,
            prefix,
            include=include,
            exclude=exclude,
            progress=progress,
            max_workers=max_workers,
        )

    def copy(self, source_path: str, destination_path: str) -> CopyObjectResult:
        """Copy an object server-side (no bytes move through the client).

        Args:
            source_path: The object to copy.
            destination_path: Where the copy goes.

        Returns:
            Both paths.

        Raises:
            NotFoundError: The source does not exist.

        """
        params = {
            "session_id": self._session_id,
            "source_path": source_path,
            "destination_path": destination_path,
        }
        data = self._client._post_json(f"{self._repository_path}/object/copy", params=params) or {}
        result = CopyObjectResult.from_dict(data)
        return CopyObjectResult(
            source_path=result.source_path or source_path,
            destination_path=result.destination_path or destination_path,
        )

    def delete(self, path: str) -> None:
        """Stage the deletion of one object.

        Args:
            path: The object path.

        """
        self._client._delete(
            f"{self._repository_path}/object", params={"session_id": self._session_id, "path": path}
        )

    def delete_many(self, paths: list[str]) -> int:
        """Stage the deletion of several objects (batched 1000 per request).

        Args:
            paths: The object paths.

        Returns:
            How many objects the server reports deleted.

        """
        deleted = 0
        for start in range(0, len(paths), DELETE_MANY_LIMIT):
            batch = paths[start : start + DELETE_MANY_LIMIT]
            data = self._client._post_json(
                f"{self._repository_path}/objects/delete",
                params={"session_id": self._session_id},
                json={"paths": batch},
            )
            value = (data or {}).get("deleted", 0)
            deleted += int(value) if isinstance(value, int) else 0
        return deleted


def _upload_settings(client: CoreClient) -> UploadSettings:
    settings = getattr(client, "_upload_settings", None)
    return settings if isinstance(settings, UploadSettings) else UploadSettings()


def _upload_strategies(client: CoreClient) -> list[UploadStrategy]:
    # A tilde.data.Client caches its strategies; any other client gets a fresh plugin manager per upload.
    finder = getattr(client, "_upload_strategies", None)
    if callable(finder):
        strategies: list[UploadStrategy] = finder()
        return strategies
    return collect_upload_strategies(make_plugin_manager())
