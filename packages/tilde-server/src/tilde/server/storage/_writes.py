"""Write operations of the engine: staging into sessions and multipart uploads.

A multipart upload is stored one of two ways. By default each part is its own blob and completing copies
them into one new blob. Created with a ``part_size`` (and a blob store that has upload files), its parts are
written in place into one sparse file at ``(n - 1) * part_size`` and completing hashes that file and renames
it into place, so every byte is written once (see ``_inplace``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from tilde.server.storage._base import EngineBase, check_metadata, to_object
from tilde.server.storage._inplace import InPlacePartWriter
from tilde.server.storage._time import now_micros
from tilde.server.storage.errors import InvalidArgument, NotFound
from tilde.server.storage.metadata import MetadataTx, PartRecord, SessionRecord, UploadRecord, VersionRecord
from tilde.server.storage.paths import validate_path
from tilde.server.storage.types import BlobRef, NewObject, ObjectVersion

__all__ = ["DEFAULT_CONTENT_TYPE", "MAX_IN_PLACE_PART_SIZE", "MAX_PART_NUMBER", "WritesMixin"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_PART_NUMBER = 10_000
#: Largest part size laid out in one file: 10 000 such parts stay within ext4's 16 TiB file size limit.
MAX_IN_PLACE_PART_SIZE = 1 << 30
# Copying a blob into an in-place upload's range (``put_part`` on such an upload) reads this much at a time.
_COPY_CHUNK = 8 * 1024 * 1024


def _record(
    path: str,
    blob: BlobRef,
    content_type: str,
    metadata: Mapping[str, str],
    modified_us: int,
    source_metadata: Mapping[str, str] | None = None,
) -> VersionRecord:
    return VersionRecord(
        path=path,
        blob_key=blob.key,
        size=blob.size,
        sha256=blob.sha256,
        content_type=content_type or DEFAULT_CONTENT_TYPE,
        metadata=dict(metadata),
        modified_us=modified_us,
        source_metadata=dict(source_metadata or {}),
    )


def _tombstone(path: str, modified_us: int) -> VersionRecord:
    return VersionRecord(
        path=path,
        blob_key="",
        size=0,
        sha256="",
        content_type="",
        metadata={},
        modified_us=modified_us,
        deleted=True,
    )


def _bare_etag(etag: str) -> str:
    """Strip quotes (and a weak-validator prefix) so quoted and bare etags compare equal."""
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


class WritesMixin(EngineBase):
    """Staging writes into open sessions (anything else raises ``SessionClosed``)."""

    def ingest_file(self, path: Path) -> BlobRef:
        """Hash a finished file and move it into the blob store (see ``BlobStore.ingest_file``)."""
        return self.blobs.ingest_file(path)

    def stage_blob(
        self,
        repo_id: str,
        session_id: str,
        path: str,
        blob: BlobRef,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectVersion:
        """Stage a new version of ``path`` holding a stored blob.

        Args:
            repo_id: The repository.
            session_id: An open session.
            path: Object path.
            blob: Bytes already in the blob store.
            content_type: MIME type.
            metadata: User metadata.

        Returns:
            The staged version.

        Raises:
            NotFound: Unknown repository or session, or the blob's bytes are missing.
            SessionClosed: The session is not open.
            InvalidArgument: Invalid path or metadata.

        """
        validate_path(path)
        meta = check_metadata(metadata)
        if not self.blobs.exists(blob):
            raise NotFound(f"blob '{blob.key}'")
        record = _record(path, blob, content_type, meta, now_micros())
        with self.meta.write() as tx:
            self._repo(tx, repo_id)
            self._open_session(tx, repo_id, session_id)
            tx.put_staged(session_id, [record])
        return to_object(record)

    def stage_many(
        self,
        repo_id: str,
        session_id: str,
        changes: Iterable[tuple[str, BlobRef | None]],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> int:
        """Stage many writes (a ``BlobRef``) and deletions (None) in one transaction.

        Args:
            repo_id: The repository.
            session_id: An open session.
            changes: ``(path, blob or None)`` pairs.
            content_type: MIME type of every written object.

        Returns:
            How many changes were staged (deletions of invisible paths do not count).

        Raises:
            NotFound: Unknown repository or session.
            SessionClosed: The session is not open.
            InvalidArgument: Invalid path.

        """
        now = now_micros()
        items = [(validate_path(path), blob) for path, blob in changes]
        count = 0
        with self.meta.write() as tx:
            self._repo(tx, repo_id)
            session = self._open_session(tx, repo_id, session_id)
            writes = []
            for path, blob in items:
                if blob is None:
                    count += self._stage_delete(tx, session, path, now)
                else:
                    writes.append(_record(path, blob, content_type, {}, now))
            tx.put_staged(session_id, writes)
        return count + len(writes)

    def stage_objects(self, repo_id: str, session_id: str, objects: Iterable[NewObject]) -> int:
        """Stage several objects whose bytes are already stored, in one transaction (imports use it).

        Unlike `stage_many`, each object keeps its own content type, user metadata and source metadata.

        Args:
            repo_id: The repository.
            session_id: An open session.
            objects: The objects to stage.

        Returns:
            How many objects were staged.

        Raises:
            NotFound: Unknown repository or session, or a blob's bytes are missing.
            SessionClosed: The session is not open.
            InvalidArgument: Invalid path, metadata or source metadata.

        """
        now = now_micros()
        records = []
        for item in objects:
            validate_path(item.path)
            if not self.blobs.exists(item.blob):
                raise NotFound(f"blob '{item.blob.key}'")
            meta = check_metadata(item.metadata)
            source = check_metadata(item.source_metadata)
            records.append(_record(item.path, item.blob, item.content_type, meta, now, source))
        with self.meta.write() as tx:
            self._repo(tx, repo_id)
            self._open_session(tx, repo_id, session_id)
            tx.put_staged(session_id, records)
        return len(records)

    @staticmethod
    def _stage_delete(tx: MetadataTx, session: SessionRecord, path: str, now: int) -> bool:
        staged = tx.get_staged(session.id, path)
        if staged is not None and staged.deleted:
            return False
        in_base = session.base_seq > 0 and tx.version_at(session.repo_id, path, session.base_seq) is not None
        if staged is None and not in_base:
            return False
        if in_base:
            tx.put_staged(session.id, [_tombstone(path, now)])
        else:
            # Only the session ever had this path: forgetting the staged write is the whole deletion.
            tx.remove_staged(session.id, path)
        return True

    def stage_delete(self, repo_id: str, session_id: str, path: str) -> bool:
        """Stage the deletion of ``path``.

        Args:
            repo_id: The repository.
            session_id: An open session.
            path: Object path.

        Returns:
            False when nothing was visible at ``path`` in the session.

        Raises:
            NotFound: Unknown repository or session.
            SessionClosed: The session is not open.
            InvalidArgument: Invalid path.

        """
        validate_path(path)
        with self.meta.write() as tx:
            self._repo(tx, repo_id)
            session = self._open_session(tx, repo_id, session_id)
            return self._stage_delete(tx, session, path, now_micros())

    def delete_many(self, repo_id: str, session_id: str, paths: Iterable[str]) -> int:
        """Stage several deletions in one transaction.

        Args:
            repo_id: The repository.
            session_id: An open session.
            paths: Object paths.

        Returns:
            How many of them were visible (and are now deleted).

        Raises:
            NotFound: Unknown repository or session.
            SessionClosed: The session is not open.
            InvalidArgument: An invalid path (nothing is staged then).

        """
        checked = [validate_path(path) for path in paths]
        now = now_micros()
        with self.meta.write() as tx:
            self._repo(tx, repo_id)
            session = self._open_session(tx, repo_id, session_id)
            return sum(1 for path in dict.fromkeys(checked) if self._stage_delete(tx, session, path, now))

    def stage_copy(self, repo_id: str, session_id: str, source: str, destination: str) -> ObjectVersion:
        """Stage ``destination`` as a copy of what the session sees at ``source`` (no bytes are copied).

        Args:
            repo_id: The repository.
            session_id: An open session.
            source: Existing object path.
            destination: New object path.

        Returns:
            The staged destination version.

        Raises:
            NotFound: Unknown repository, session or source object.
            SessionClosed: The session is not open.
            InvalidArgument: Invalid path.

        """
        validate_path(source)
        validate_path(destination)
        with self.meta.write() as tx:
            self._repo(tx, repo_id)
            session = self._open_session(tx, repo_id, session_id)
            found = self._visible(tx, session, source)
            if found is None:
                raise NotFound(f"object '{source}'")
            blob = BlobRef(key=found.blob_key, size=found.size, sha256=found.sha256)
            record = _record(destination, blob, found.content_type, found.metadata, now_micros())
            tx.put_staged(session_id, [record])
        return to_object(record)

    # Multipart uploads

    def create_upload(self, repo_id: str, session_id: str, path: str, *, part_size: int | None = None) -> str:
        """Start a multipart upload to ``path`` in a session.

        Args:
            repo_id: The repository.
            session_id: An open session.
            path: Destination path.
            part_size: The size of every part but the last, when the uploader knows it: the parts are then
                written in place into one file (``part_writer``) and never copied. Ignored (one blob per part)
                above ``MAX_IN_PLACE_PART_SIZE`` or when the blob store has no upload files.

        Returns:
            The upload id.

        Raises:
            NotFound: Unknown repository or session.
            SessionClosed: The session is not open.
            InvalidArgument: Invalid path, or a part size below 1.

        """
        validate_path(path)
        if part_size is not None and part_size < 1:
            raise InvalidArgument("part size must be at least 1 byte", code="invalid_part_size")
        files = self._upload_files()
        in_place = part_size is not None and part_size <= MAX_IN_PLACE_PART_SIZE and files is not None
        upload_id = uuid.uuid4().hex
        if in_place and files is not None:
            # The file exists before the record, so any part writer that finds the upload finds its file.
            files.create_upload_file(upload_id)
        try:
            with self.meta.write() as tx:
                self._repo(tx, repo_id)
                self._open_session(tx, repo_id, session_id)
                record = UploadRecord(
                    upload_id, repo_id, session_id, path, now_micros(), part_size if in_place else None
                )
                tx.insert_upload(record)
        except BaseException:
            if in_place and files is not None:
                files.discard_upload_file(upload_id)
            raise
        return upload_id

    def part_writer(self, upload_id: str, part_number: int) -> InPlacePartWriter | None:
        """Open a writer for a part of an in-place upload (one created with a ``part_size``).

        The writer streams the part into its range of the upload's file; its ``commit`` records the part and
        returns its etag. Writers of different parts may run at once, from any thread.

        Args:
            upload_id: The upload.
            part_number: 1 to 10000.

        Returns:
            The writer, or None when the upload stores one blob per part (use ``put_part`` then).

        Raises:
            NotFound: Unknown upload, or its file is gone.
            InvalidArgument: Part number out of range.

        """
        _check_part_number(part_number)
        with self.meta.read() as tx:
            upload = tx.get_upload(upload_id)
        if upload is None:
            raise NotFound(f"upload '{upload_id}'")
        files = self._upload_files()
        if upload.part_size is None or files is None:
            return None
        return InPlacePartWriter(
            upload_id,
            part_number,
            upload.part_size,
            files.open_upload_file(upload_id),
            self._part_claims,
            record=lambda part: self._record_part(upload_id, part),
            # An empty digest marks the part as not uploaded (no real part hashes to "").
            invalidate=lambda number: self._record_part(upload_id, PartRecord(number, "", 0, "")),
        )

    def _record_part(self, upload_id: str, part: PartRecord) -> None:
        with self.meta.write() as tx:
            if tx.get_upload(upload_id) is None:
                raise NotFound(f"upload '{upload_id}'")
            tx.put_part(upload_id, part)

    def put_part(self, upload_id: str, part_number: int, writer_commit: BlobRef) -> str:
        """Record (or replace) a part of an upload.

        Args:
            upload_id: The upload.
            part_number: 1 to 10000.
            writer_commit: The part's bytes, already committed to the blob store (copied into the upload's
                file for an in-place upload).

        Returns:
            The part's etag (quoted), to be passed back to ``complete_upload``.

        Raises:
            NotFound: Unknown upload.
            InvalidArgument: Part number out of range (or, in place, a part larger than the part size).

        """
        _check_part_number(part_number)
        writer = self.part_writer(upload_id, part_number)
        if writer is not None:
            with writer, open(self.blobs.path(writer_commit), "rb", buffering=0) as source:
                while chunk := source.read(_COPY_CHUNK):
                    writer.write(chunk)
                return writer.commit()
        self._record_part(
            upload_id, PartRecord(part_number, writer_commit.key, writer_commit.size, writer_commit.sha256)
        )
        return writer_commit.etag

    @staticmethod
    def _session_upload(
        tx: MetadataTx, repo_id: str, session_id: str, upload_id: str, path: str
    ) -> UploadRecord:
        """Return the upload ``upload_id`` of this repository, checked to belong to the session and path."""
        upload = tx.get_upload(upload_id)
        if upload is None or upload.repo_id != repo_id:
            raise NotFound(f"upload '{upload_id}'")
        if upload.session_id != session_id or upload.path != path:
            raise InvalidArgument("the upload belongs to another session or path", code="invalid_upload")
        return upload

    def complete_upload(
        self,
        repo_id: str,
        session_id: str,
        path: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        content_type: str,
        size_bytes: int | None = None,
    ) -> ObjectVersion:
        """Assemble the listed parts into one object and stage it.

        Args:
            repo_id: The repository.
            session_id: The session the upload was created in (still open).
            path: The upload's destination path.
            upload_id: The upload.
            parts: ``(part_number, etag)`` in strictly ascending part order; etags quoted or bare. An in-place
                upload needs parts 1 to N, each but the last holding exactly the part size.
            content_type: MIME type of the object.
            size_bytes: Expected total size, checked when given.

        Returns:
            The staged version.

        Raises:
            NotFound: Unknown repository, session or upload (or the in-place upload's file is gone).
            SessionClosed: The session is not open.
            InvalidArgument: Parts out of order, unknown, with a wrong etag or size, or a size mismatch; or
                the upload belongs to another session or path.

        """
        validate_path(path)
        with self.meta.read() as tx:
            self._repo(tx, repo_id)
            self._open_session(tx, repo_id, session_id)
            upload = self._session_upload(tx, repo_id, session_id, upload_id, path)
            recorded = tx.get_parts(upload_id)
        files = self._upload_files()
        if upload.part_size is not None and files is not None:
            total = self._in_place_size(parts, recorded, upload.part_size)
            _check_size(total, size_bytes)
            part_size, count = upload.part_size, len(parts)

            def part_digests() -> list[str]:
                # Read again once the file is locked: a part sent again meanwhile no longer matches.
                with self.meta.read() as tx:
                    now = tx.get_parts(upload_id)
                return [now[n].sha256 if n in now else "" for n in range(1, count + 1)]

            blob = files.install_upload_file(upload_id, total, part_size=part_size, part_digests=part_digests)
        else:
            refs = self._checked_parts(parts, recorded)
            total = sum(ref.size for ref in refs)
            _check_size(total, size_bytes)
            blob = refs[0] if len(refs) == 1 else self.blobs.concat(refs)
        record = _record(path, blob, content_type, {}, now_micros())
        with self.meta.write() as tx:
            self._open_session(tx, repo_id, session_id)
            if tx.get_upload(upload_id) is None:
                raise NotFound(f"upload '{upload_id}'")
            tx.put_staged(session_id, [record])
            tx.delete_upload(upload_id)
        return to_object(record)

    @classmethod
    def _in_place_size(
        cls, parts: list[tuple[int, str]], recorded: dict[int, PartRecord], part_size: int
    ) -> int:
        """Check the parts of an in-place upload (1 to N, full but the last) and return the object's size."""
        cls._checked_parts(parts, recorded)
        for index, (number, _) in enumerate(parts, start=1):
            if number != index:
                raise InvalidArgument(
                    f"part {index} is missing: an upload with a part size needs parts 1 to N",
                    code="invalid_part",
                )
            size = recorded[number].size
            if number < len(parts) and size != part_size:
                raise InvalidArgument(
                    f"part {number} holds {size} bytes; every part but the last must hold {part_size}",
                    code="invalid_part",
                )
        return (len(parts) - 1) * part_size + recorded[len(parts)].size if parts else 0

    @staticmethod
    def _checked_parts(parts: list[tuple[int, str]], recorded: dict[int, PartRecord]) -> list[BlobRef]:
        refs: list[BlobRef] = []
        previous = 0
        for number, etag in parts:
            if number <= previous:
                raise InvalidArgument(
                    "parts must be listed in strictly ascending order", code="invalid_part_order"
                )
            previous = number
            part = recorded.get(number)
            if part is None or not part.sha256:
                raise InvalidArgument(f"part {number} was not uploaded", code="invalid_part")
            if _bare_etag(etag) != part.sha256:
                raise InvalidArgument(f"part {number} has a different etag", code="invalid_part")
            refs.append(BlobRef(key=part.blob_key, size=part.size, sha256=part.sha256))
        return refs

    def list_parts(
        self, repo_id: str, session_id: str, path: str, upload_id: str
    ) -> tuple[int | None, list[PartRecord]]:
        """Return an upload's part size (None: one blob per part) and the parts received so far, in order.

        A client resuming an interrupted upload sends only the parts missing here.

        Raises:
            NotFound: Unknown upload (completed, aborted or never started).
            InvalidArgument: The upload belongs to another session or path.

        """
        with self.meta.read() as tx:
            upload = self._session_upload(tx, repo_id, session_id, upload_id, path)
            recorded = tx.get_parts(upload_id)
        # An empty digest marks a part whose in-place write was interrupted: not received.
        parts = [recorded[number] for number in sorted(recorded) if recorded[number].sha256]
        return upload.part_size, parts

    def abort_upload(self, upload_id: str) -> None:
        """Forget an upload and its parts (and delete an in-place upload's file).

        Raises:
            NotFound: Unknown upload.

        """
        with self.meta.write() as tx:
            upload = tx.get_upload(upload_id)
            if upload is None:
                raise NotFound(f"upload '{upload_id}'")
            tx.delete_upload(upload_id)
        self._discard_upload_files([upload])


def _check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise InvalidArgument(f"part number must be between 1 and {MAX_PART_NUMBER}", code="invalid_part")


def _check_size(total: int, size_bytes: int | None) -> None:
    if size_bytes is not None and size_bytes != total:
        raise InvalidArgument(f"the parts hold {total} bytes, not {size_bytes}", code="size_mismatch")
