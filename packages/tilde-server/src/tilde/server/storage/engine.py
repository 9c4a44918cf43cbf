"""StorageEngine: versioned repositories on top of a ``MetadataStore`` and a ``BlobStore``.

History is linear per repository. The engine is assembled from parts: ``_sessions`` (session lifecycle and
commits, on ``_commits``), ``_reads`` (stat, listings, diffs, session views) and ``_writes`` (staging and
multipart uploads).
"""

from __future__ import annotations

import time
from collections.abc import Set
from pathlib import Path

from tilde.server._db import Location, PostgresDatabase, database_location
from tilde.server.storage._base import ActorLike
from tilde.server.storage._reads import ReadsMixin
from tilde.server.storage._sessions import SessionsMixin
from tilde.server.storage._time import now_micros
from tilde.server.storage._writes import WritesMixin
from tilde.server.storage.blobs import BlobStore, LocalBlobStore
from tilde.server.storage.errors import InvalidArgument, NotFound
from tilde.server.storage.metadata import MetadataStore
from tilde.server.storage.sqlite import SQLiteMetadataStore
from tilde.server.storage.types import CommitInfo, Page

__all__ = ["ActorLike", "StorageEngine", "open_metadata_store"]


def open_metadata_store(location: Location) -> MetadataStore:
    """Open the metadata store at ``location``: a SQLite file or a PostgreSQL schema.

    PostgreSQL's driver is imported only here, when a database URL is configured.
    """
    if isinstance(location, PostgresDatabase):
        from tilde.server.storage.postgres import PostgresMetadataStore

        return PostgresMetadataStore(location)
    return SQLiteMetadataStore(location)


class StorageEngine(SessionsMixin, ReadsMixin, WritesMixin):
    """Versioned object storage: repositories, sessions, commits, listings and blobs (thread-safe).

    Args:
        meta: Where versioning metadata lives.
        blobs: Where object bytes live (also ``engine.blobs``).

    """

    def __init__(self, meta: MetadataStore, blobs: BlobStore) -> None:
        super().__init__(meta, blobs)

    @classmethod
    def open(
        cls, data_dir: Path, *, blobs: BlobStore | None = None, database_url: str | None = None
    ) -> StorageEngine:
        """Open (creating when needed) the engine stored in ``data_dir``.

        Metadata goes to ``data_dir/meta.sqlite3`` (SQLite, WAL), or to the ``tilde_meta`` schema of a
        PostgreSQL database; blobs under ``data_dir/blobs``.

        Args:
            data_dir: The data directory.
            blobs: Another blob store to use instead of ``data_dir/blobs`` (e.g. ``S3BlobStore``).
            database_url: A ``postgresql://`` URL for the metadata; None keeps it in SQLite.

        Returns:
            The engine; ``close()`` it when done.

        """
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        meta = open_metadata_store(database_location(data_dir, database_url, "meta"))
        if blobs is not None:
            return cls(meta, blobs)
        with meta.read() as tx:
            # Their files may be completed still: the blob store's start-up sweep keeps them.
            live = {upload.id for upload in tx.list_uploads()}
        return cls(meta, LocalBlobStore(data_dir / "blobs", live_uploads=live))

    def close(self) -> None:
        """Release database connections (and the blob store's lock)."""
        self.meta.close()
        close_blobs = getattr(self.blobs, "close", None)
        if close_blobs is not None:
            close_blobs()

    # Repositories

    def init_repository(self, repo_id: str) -> None:
        """Create an empty repository (no commits); a no-op when it exists.

        Args:
            repo_id: The repository id, chosen by the caller.

        Raises:
            InvalidArgument: Empty id.

        """
        if not repo_id:
            raise InvalidArgument("repository id must not be empty")
        with self.meta.write() as tx:
            tx.create_repo(repo_id, now_micros())

    def drop_repository(self, repo_id: str) -> None:
        """Forget a repository: its commits, versions, sessions and uploads (blobs stay; upload files go).

        Args:
            repo_id: The repository; unknown ids are ignored.

        """
        with self.meta.write() as tx:
            uploads = tx.list_uploads(repo_id=repo_id)
            tx.delete_repo(repo_id)
        self._discard_upload_files(uploads)

    # Commits

    def head(self, repo_id: str) -> CommitInfo | None:
        """Return the latest commit, or None for a repository without commits.

        Raises:
            NotFound: Unknown repository.

        """
        return self.resolve_ref(repo_id, None)

    def get_commit(self, repo_id: str, commit_id: str) -> CommitInfo:
        """Return a commit by id.

        Raises:
            NotFound: Unknown repository or commit.

        """
        with self.meta.read() as tx:
            self._repo(tx, repo_id)
            commit = tx.get_commit(repo_id, commit_id) if commit_id else None
        if commit is None:
            raise NotFound(f"commit '{commit_id}'")
        return commit

    def log(
        self, repo_id: str, *, ref: str | None = None, after: str | None = None, limit: int = 100
    ) -> Page[CommitInfo]:
        """Return history newest first, starting at ``ref`` (default head).

        Args:
            repo_id: The repository.
            ref: The newest commit to include.
            after: Cursor: a commit id; only older commits follow.
            limit: Page size.

        Returns:
            One page; the cursor is the last commit's id.

        Raises:
            NotFound: Unknown repository, ref or cursor commit.
            InvalidArgument: Bad limit.

        """
        if limit < 1:
            raise InvalidArgument("limit must be at least 1")
        with self.meta.read() as tx:
            start = self._resolve(tx, repo_id, ref)
            if start is None:
                return Page(items=[], has_more=False, next_cursor=None)
            max_seq = start.seq
            if after:
                cursor = tx.get_commit(repo_id, after)
                if cursor is None:
                    raise NotFound(f"commit '{after}'")
                max_seq = min(max_seq, cursor.seq - 1)
            commits = tx.commits_before(repo_id, max_seq, limit + 1) if max_seq > 0 else []
        has_more = len(commits) > limit
        commits = commits[:limit]
        return Page(items=commits, has_more=has_more, next_cursor=commits[-1].id if has_more else None)

    # Garbage collection

    def collect_garbage(self, *, grace_seconds: float = 3600.0, keep: Set[str] = frozenset()) -> int:
        """Delete stored blobs that nothing refers to any more.

        Unreferenced blobs come from rolled-back sessions, replaced uploads and multipart parts (completing an
        upload stored one blob per part copies them into one new blob). A blob is only deleted when its file
        has not been written or reused for ``grace_seconds``, so bytes uploaded but not yet staged are safe.
        Files of in-place uploads that no longer exist (left by a crash between forgetting an upload and
        deleting its file) go too, after the same grace period.

        Args:
            grace_seconds: Minimum age of a deleted blob file.
            keep: Further blob keys in use that the metadata store does not know about (read them before
                calling, so a blob moving from there into a session is seen in one place or the other).

        Returns:
            How many blobs were deleted.

        """
        cutoff = time.time() - grace_seconds
        with self.meta.read() as tx:
            referenced = tx.referenced_blob_keys() | keep
        deleted = sum(
            1 for blob in list(self.blobs.unreferenced(referenced, cutoff)) if self.blobs.delete(blob, cutoff)
        )
        sweep_uploads = getattr(self.blobs, "sweep_uploads", None)
        if sweep_uploads is not None:
            # Direct uploads to an object store: staging objects and multipart uploads nobody can finish.
            with self.meta.read() as tx:
                sweep_uploads({upload.id for upload in tx.list_uploads()}, cutoff)
        files = self._upload_files()
        if files is not None:
            for upload_id in files.upload_file_ids(cutoff):
                with self.meta.read() as tx:
                    orphaned = tx.get_upload(upload_id) is None
                if orphaned:
                    files.discard_upload_file(upload_id)
        return deleted
