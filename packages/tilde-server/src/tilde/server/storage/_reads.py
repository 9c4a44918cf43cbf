"""Read operations of the engine: stat, listings, staged changes, diffs and session views."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tilde.server.storage._base import EngineBase, to_object
from tilde.server.storage.errors import InvalidArgument, NotFound
from tilde.server.storage.listing import collect_page, overlay, scan
from tilde.server.storage.metadata import KeyRange, MetadataTx, VersionRecord
from tilde.server.storage.paths import prefix_upper_bound, validate_path
from tilde.server.storage.types import (
    BlobRef,
    ChangeItem,
    CommitInfo,
    ListingItem,
    ObjectVersion,
    Page,
    ViewEntry,
)

__all__ = ["ReadsMixin"]

T = TypeVar("T")


@dataclass(frozen=True)
class _DiffRow:
    path: str
    status: str | None
    version: VersionRecord | None


def _prefix_item(prefix: str) -> ListingItem:
    return ListingItem(path=prefix, type="prefix")


def _as_row(record: VersionRecord) -> VersionRecord | str:
    return record


def _as_prefix(prefix: str) -> VersionRecord | str:
    return prefix


def _object_item(record: VersionRecord) -> ListingItem:
    return ListingItem(path=record.path, type="object", version=to_object(record))


def _diff_item(row: _DiffRow) -> ListingItem:
    assert row.version is not None
    return ListingItem(path=row.path, type="object", version=to_object(row.version), status=row.status)


def _same_version(left: VersionRecord, right: VersionRecord) -> bool:
    return (left.sha256, left.content_type, dict(left.metadata)) == (
        right.sha256,
        right.content_type,
        dict(right.metadata),
    )


class ReadsMixin(EngineBase):
    """Reads; a ``session_id`` selects the session's view, else ``ref`` (default: head) selects a commit."""

    def resolve_ref(self, repo_id: str, ref: str | None) -> CommitInfo | None:
        """Resolve a ref to a commit.

        Args:
            repo_id: The repository.
            ref: None or ``""`` for the head; otherwise a commit id or an unambiguous prefix of one (at least
                4 characters).

        Returns:
            The commit; None for the head of a repository without commits.

        Raises:
            NotFound: Unknown repository or commit.

        """
        with self.meta.read() as tx:
            return self._resolve(tx, repo_id, ref)

    def _resolve(self, tx: MetadataTx, repo_id: str, ref: str | None) -> CommitInfo | None:
        repo = self._repo(tx, repo_id)
        if not ref:
            return None if repo.head_seq == 0 else tx.get_commit_at(repo_id, repo.head_seq)
        commit = tx.get_commit(repo_id, ref)
        if commit is None and len(ref) >= 4:
            matches = tx.commits_with_prefix(repo_id, ref, 2)
            commit = matches[0] if len(matches) == 1 else None
        if commit is None:
            raise NotFound(f"commit '{ref}'")
        return commit

    def view_commit(self, repo_id: str, ref: str | None = None) -> str | None:
        """Return the id of the commit a read of ``ref`` sees (one point look-up).

        Args:
            repo_id: The repository.
            ref: None or ``""`` for the head; otherwise a commit id or an unambiguous prefix of one.

        Returns:
            The commit id; None for the head of a repository without commits.

        Raises:
            NotFound: Unknown repository or commit.

        """
        if not ref:
            with self.meta.point_read() as tx:
                return self._repo(tx, repo_id).head_commit_id
        with self.meta.read() as tx:
            commit = self._resolve(tx, repo_id, ref)
            return None if commit is None else commit.id

    def _view(
        self, tx: MetadataTx, repo_id: str, session_id: str | None, ref: str | None
    ) -> tuple[int, str | None]:
        """Return the commit sequence to read and the session whose staged rows overlay it."""
        if session_id:
            self._repo(tx, repo_id)
            session = self._readable_session(tx, repo_id, session_id)
            return session.base_seq, session.id
        if not ref:
            # The head's sequence is on the repository row: no need to load the head commit.
            return self._repo(tx, repo_id).head_seq, None
        commit = self._resolve(tx, repo_id, ref)
        return (0 if commit is None else commit.seq), None

    def stat(
        self, repo_id: str, path: str, *, session_id: str | None = None, ref: str | None = None
    ) -> ObjectVersion:
        """Return the version of an object visible in a session or commit.

        Args:
            repo_id: The repository.
            path: Object path.
            session_id: Read the session's view (base commit + staged changes).
            ref: Otherwise read this commit (default: head).

        Returns:
            The object version.

        Raises:
            NotFound: Unknown repository, session, commit or object.
            SessionClosed: The session was committed or rolled back.
            InvalidArgument: Invalid path.

        """
        validate_path(path)
        with self.meta.read() as tx:
            seq, staged_in = self._view(tx, repo_id, session_id, ref)
            record: VersionRecord | None = None
            staged = tx.get_staged(staged_in, path) if staged_in else None
            if staged is not None:
                record = None if staged.deleted else staged
            elif seq:
                record = tx.version_at(repo_id, path, seq)
        if record is None:
            raise NotFound(f"object '{path}'")
        return to_object(record)

    def blob_path(self, blob: BlobRef) -> Path:
        """Return the immutable local file holding a blob (serve it, hard-link it; never modify it)."""
        return self.blobs.path(blob)

    def _source(
        self, tx: MetadataTx, repo_id: str, seq: int, staged_in: str | None, first_batch: int = 8
    ) -> Callable[[KeyRange], Iterator[VersionRecord]]:
        def committed(keys: KeyRange, limit: int) -> list[VersionRecord]:
            return tx.versions_at(repo_id, seq, keys, limit) if seq else []

        def open_scan(keys: KeyRange) -> Iterator[VersionRecord]:
            base = scan(committed, keys, first_batch=first_batch)
            if staged_in is None:
                return base
            session = staged_in
            staged = scan(lambda k, n: tx.staged_rows(session, k, n), keys, first_batch=first_batch)
            return overlay(base, staged)

        return open_scan

    def list_objects(
        self,
        repo_id: str,
        *,
        session_id: str | None = None,
        ref: str | None = None,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        limit: int = 100,
    ) -> Page[ListingItem]:
        """List objects in path order.

        Args:
            repo_id: The repository.
            session_id: List the session's view.
            ref: Otherwise list this commit (default: head).
            prefix: Only paths starting with this.
            delimiter: Collapse paths sharing the text up to the next delimiter into one ``"prefix"`` item.
            after: Cursor from the previous page (a path or a prefix).
            limit: Page size.

        Returns:
            One page.

        Raises:
            NotFound: Unknown repository, session or commit.
            SessionClosed: The session was committed or rolled back.
            InvalidArgument: Bad limit.

        """
        return self._page(
            repo_id,
            session_id,
            ref,
            prefix,
            delimiter,
            after,
            limit,
            to_item=_object_item,
            to_prefix=_prefix_item,
        )

    def list_records(
        self,
        repo_id: str,
        *,
        session_id: str | None = None,
        ref: str | None = None,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        limit: int = 100,
    ) -> Page[VersionRecord | str]:
        """List like `list_objects`, as the stored rows themselves (a common prefix is its string).

        For callers that encode a page straight from the rows, without a value object per entry.
        """
        return self._page(
            repo_id, session_id, ref, prefix, delimiter, after, limit, to_item=_as_row, to_prefix=_as_prefix
        )

    def _page(
        self,
        repo_id: str,
        session_id: str | None,
        ref: str | None,
        prefix: str,
        delimiter: str,
        after: str,
        limit: int,
        *,
        to_item: Callable[[VersionRecord], T],
        to_prefix: Callable[[str], T],
    ) -> Page[T]:
        """Return one page of the listing of the view ``session_id``/``ref`` name, made by the callables."""
        with self.meta.read() as tx:
            seq, staged_in = self._view(tx, repo_id, session_id, ref)
            return collect_page(
                # Without a delimiter a page reads limit + 1 rows: fetch them in one query, not four.
                self._source(tx, repo_id, seq, staged_in, 8 if delimiter else limit + 1),
                prefix=prefix,
                delimiter=delimiter,
                after=after,
                limit=limit,
                to_item=to_item,
                to_prefix=to_prefix,
            )

    def list_changes(
        self, repo_id: str, session_id: str, *, prefix: str = "", after: str = "", limit: int = 100
    ) -> Page[ChangeItem]:
        """List a session's staged changes in path order (``version`` None = staged deletion).

        Args:
            repo_id: The repository.
            session_id: The session (any state; closed sessions have no staged changes).
            prefix: Only paths starting with this.
            after: Cursor from the previous page.
            limit: Page size.

        Returns:
            One page.

        Raises:
            NotFound: Unknown repository or session.
            InvalidArgument: Bad limit.

        """
        with self.meta.read() as tx:
            self._repo(tx, repo_id)
            self._session(tx, repo_id, session_id)
            return collect_page(
                lambda keys: scan(lambda k, n: tx.staged_rows(session_id, k, n), keys),
                prefix=prefix,
                delimiter="",
                after=after,
                limit=limit,
                to_item=lambda row: ChangeItem(
                    path=row.path, version=None if row.deleted else to_object(row)
                ),
                to_prefix=lambda p: ChangeItem(path=p, version=None),
            )

    def diff(
        self,
        repo_id: str,
        *,
        left: str | None,
        right: str,
        prefix: str = "",
        delimiter: str = "",
        after: str = "",
        limit: int = 100,
    ) -> Page[ListingItem]:
        """List what differs between two commits, in path order.

        Args:
            repo_id: The repository.
            left: The older side (None = the empty tree).
            right: The newer side.
            prefix: Only paths starting with this.
            delimiter: Collapse common prefixes (prefix items have no status).
            after: Cursor from the previous page.
            limit: Page size.

        Returns:
            Items with ``status`` ``"added"``, ``"modified"`` or ``"removed"`` (for removals ``version``
            is the left one).

        Raises:
            NotFound: Unknown repository or commit.
            InvalidArgument: Bad limit or missing ``right``.

        """
        if not right:
            raise InvalidArgument("diff needs a right commit")
        with self.meta.read() as tx:
            right_commit = self._resolve(tx, repo_id, right)
            left_commit = self._resolve(tx, repo_id, left) if left else None
            right_seq = 0 if right_commit is None else right_commit.seq
            left_seq = 0 if left_commit is None else left_commit.seq
            low, high = min(left_seq, right_seq), max(left_seq, right_seq)

            def rows(keys: KeyRange, limit: int) -> list[_DiffRow]:
                result = []
                for path in tx.changed_paths(repo_id, low, high, keys, limit):
                    old = tx.version_at(repo_id, path, left_seq) if left_seq else None
                    new = tx.version_at(repo_id, path, right_seq) if right_seq else None
                    if old is None and new is not None:
                        result.append(_DiffRow(path, "added", new))
                    elif old is not None and new is None:
                        result.append(_DiffRow(path, "removed", old))
                    elif old is not None and new is not None and not _same_version(old, new):
                        result.append(_DiffRow(path, "modified", new))
                    else:
                        result.append(_DiffRow(path, None, None))
                return result

            def whole_tree(keys: KeyRange, limit: int) -> list[_DiffRow]:
                # One side is the empty tree: the diff is the other side's listing, all added or all removed.
                status = "added" if right_seq else "removed"
                return [_DiffRow(v.path, status, v) for v in tx.versions_at(repo_id, high, keys, limit)]

            def open_scan(keys: KeyRange) -> Iterator[_DiffRow]:
                if low == 0:
                    return scan(whole_tree, keys) if high else iter(())
                return (row for row in scan(rows, keys) if row.status is not None)

            return collect_page(
                open_scan,
                prefix=prefix,
                delimiter=delimiter,
                after=after,
                limit=limit,
                to_item=_diff_item,
                to_prefix=_prefix_item,
            )

    def session_view(self, repo_id: str, session_id: str, prefix: str = "") -> Iterator[ViewEntry]:
        """Iterate every object visible in a session under ``prefix``, in path order.

        Rows are read in batches, each in its own short read transaction, so the caller may take its time.

        Args:
            repo_id: The repository.
            session_id: An open (or pending) session.
            prefix: Only paths starting with this.

        Returns:
            An iterator of entries whose ``blob_path`` is the immutable local file of the bytes.

        Raises:
            NotFound: Unknown repository or session (raised here, before iterating).
            SessionClosed: The session was committed or rolled back.

        """
        with self.meta.read() as tx:
            self._repo(tx, repo_id)
            session = self._readable_session(tx, repo_id, session_id)
        keys = KeyRange(prefix, True, prefix_upper_bound(prefix) if prefix else None)

        def committed(k: KeyRange, n: int) -> list[VersionRecord]:
            with self.meta.read() as tx:
                return tx.versions_at(repo_id, session.base_seq, k, n)

        def staged(k: KeyRange, n: int) -> list[VersionRecord]:
            with self.meta.read() as tx:
                return tx.staged_rows(session.id, k, n)

        # A remote blob store (S3) fetches the blobs of a batch into its local cache at once.
        fetch: Callable[[list[BlobRef]], dict[str, Path]] | None = getattr(self.blobs, "fetch", None)

        def entries() -> Iterator[ViewEntry]:
            base = scan(committed, keys, first_batch=1000) if session.base_seq else iter(())
            records = overlay(base, scan(staged, keys, first_batch=1000))
            while batch := list(itertools.islice(records, 256)):
                blobs = [BlobRef(key=r.blob_key, size=r.size, sha256=r.sha256) for r in batch]
                paths = fetch(blobs) if fetch is not None else {b.key: self.blobs.path(b) for b in blobs}
                for record, blob in zip(batch, blobs, strict=True):
                    yield ViewEntry(
                        path=record.path,
                        blob_path=paths[blob.key],
                        size=record.size,
                        etag=blob.etag,
                        content_type=record.content_type,
                    )

        return entries()
