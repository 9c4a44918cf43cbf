"""Value types returned by the data layer: object entries, listings, upload and commit results.

They are plain mutable dataclasses with slots. ``from_dict`` builds them from a response body, tolerating
missing fields and ``null`` values, and their repr shows only the fields that differ from the defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tilde.data._timestamps import parse_timestamp

__all__ = [
    "CommitResult",
    "CopyObjectResult",
    "Entry",
    "EntryRecord",
    "ListingEntry",
    "ObjectMetadata",
    "PutObjectResult",
    "SourceMetadata",
]


class _CompactRepr:
    """Mixin giving dataclasses a repr that omits fields still at their default value."""

    __slots__ = ()

    def __repr__(self) -> str:
        parts: list[str] = []
        for item in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if item.default is not dataclasses.MISSING and value == item.default:
                continue
            if item.default_factory is not dataclasses.MISSING and value == item.default_factory():
                continue
            parts.append(f"{item.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _optional_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


@dataclass(slots=True, repr=False)
class SourceMetadata(_CompactRepr):
    """Where an imported object came from.

    Attributes:
        connector_id: The connector the object was imported through.
        connector_type: ``s3``, ``gcs``, ``git`` or ``google_drive``.
        source_path: The object's path in the source.
        version_id: The source's version identifier, if it has one.
        source_etag: The source's ETag at import time.
        import_time: When the object was imported.
        import_job_id: The import job that brought the object in.

    """

    connector_id: str = ""
    connector_type: str = ""
    source_path: str = ""
    version_id: str = ""
    source_etag: str = ""
    import_time: datetime | None = None
    import_job_id: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceMetadata:
        """Build from a ``SourceMetadata`` response object."""
        return cls(
            connector_id=_text(data, "connector_id"),
            connector_type=_text(data, "connector_type"),
            source_path=_text(data, "source_path"),
            version_id=_text(data, "version_id"),
            source_etag=_text(data, "source_etag"),
            import_time=parse_timestamp(data.get("import_time")),
            import_job_id=_text(data, "import_job_id"),
        )


@dataclass(slots=True, repr=False)
class Entry(_CompactRepr):
    """An object's stored attributes.

    Attributes:
        last_modified: When this version was written.
        size: Size in bytes.
        e_tag: The object's ETag (an opaque string; quotes kept as sent).
        metadata: User metadata.
        content_type: The MIME type recorded at upload.
        source_metadata: Provenance, for imported objects.

    """

    last_modified: datetime | None = None
    size: int | None = None
    e_tag: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    content_type: str = ""
    source_metadata: SourceMetadata | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        """Build from an ``Entry`` response object."""
        source = data.get("source_metadata")
        return cls(
            last_modified=parse_timestamp(data.get("last_modified")),
            size=_optional_int(data, "size"),
            e_tag=_text(data, "e_tag"),
            metadata=_mapping(data.get("metadata")),
            content_type=_text(data, "content_type"),
            source_metadata=SourceMetadata.from_dict(source) if isinstance(source, Mapping) else None,
        )


def _optional_entry(value: object) -> Entry | None:
    return Entry.from_dict(value) if isinstance(value, Mapping) else None


@dataclass(slots=True, repr=False)
class ListingEntry(_CompactRepr):
    """One row of an object listing or a diff.

    Attributes:
        path: The object path, or the common prefix (ending in the delimiter) for ``type == "prefix"``.
        type: ``"object"`` or ``"prefix"``.
        entry: The object's attributes (``None`` for prefixes).
        status: In diffs, ``"added"``, ``"modified"`` or ``"removed"``; otherwise ``None``.

    """

    path: str
    type: str
    entry: Entry | None = None
    status: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ListingEntry:
        """Build from a ``ListingEntry`` response object."""
        return cls(
            path=_text(data, "path"),
            type=_text(data, "type") or "object",
            entry=_optional_entry(data.get("entry")),
            status=_optional_text(data, "status"),
        )


@dataclass(slots=True, repr=False)
class EntryRecord(_CompactRepr):
    """A staged change in a session: the path and its new attributes (``entry`` is ``None`` for deletions).

    Attributes:
        path: The object path.
        entry: The staged attributes, or ``None`` when the change is a deletion.

    """

    path: str = ""
    entry: Entry | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EntryRecord:
        """Build from an ``EntryRecord`` response object."""
        return cls(path=_text(data, "path"), entry=_optional_entry(data.get("entry")))


@dataclass(slots=True, repr=False)
class ObjectMetadata(_CompactRepr):
    """An object's attributes as reported by ``HEAD``.

    Attributes:
        etag: The ``ETag`` header, verbatim.
        content_type: The ``Content-Type`` header.
        content_length: The object size in bytes.
        reproducible: ``X-Tilde-Reproducible`` as a bool, ``None`` when absent or unrecognised.

    """

    etag: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    reproducible: bool | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> ObjectMetadata:
        """Build from response headers (a case-insensitive mapping such as ``httpx.Headers``)."""
        return cls(
            etag=headers.get("etag"),
            content_type=headers.get("content-type"),
            content_length=parse_content_length(headers.get("content-length")),
            reproducible=parse_reproducible(headers.get("x-tilde-reproducible")),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectMetadata:
        """Build from a mapping with the same field names."""
        reproducible = data.get("reproducible")
        return cls(
            etag=_optional_text(data, "etag"),
            content_type=_optional_text(data, "content_type"),
            content_length=_optional_int(data, "content_length"),
            reproducible=reproducible if isinstance(reproducible, bool) else None,
        )


@dataclass(slots=True, repr=False)
class PutObjectResult(_CompactRepr):
    """The outcome of an upload.

    Attributes:
        path: The object path.
        etag: The stored object's ETag.

    """

    path: str = ""
    etag: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PutObjectResult:
        """Build from a finalize/complete response."""
        return cls(path=_text(data, "path"), etag=_text(data, "etag"))


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    """A multipart upload started with `SessionObjects.start_upload`, to be sent by `resume_upload`.

    Everything needed to send the upload's missing parts from any process: keep it (``to_dict`` is plain
    JSON) where a new process will find it. The token authorises writes to this one path in its session:
    treat it as a secret.

    Attributes:
        path: The object path.
        upload_id: The server's id for the upload.
        upload_token: The token that authorises its parts and its completion.

    """

    path: str
    upload_id: str
    upload_token: str

    def __repr__(self) -> str:
        return f"MultipartUpload(path={self.path!r}, upload_id={self.upload_id!r})"

    def to_dict(self) -> dict[str, str]:
        """Return the three fields as a JSON-ready dict (``MultipartUpload.from_dict`` reads it back)."""
        return {"path": self.path, "upload_id": self.upload_id, "upload_token": self.upload_token}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MultipartUpload:
        """Build from `to_dict`'s output.

        Raises:
            ValueError: A field is missing or empty.

        """
        values = {name: data.get(name) for name in ("path", "upload_id", "upload_token")}
        missing = [name for name, value in values.items() if not isinstance(value, str) or not value]
        if missing:
            raise ValueError(f"a multipart upload needs {', '.join(missing)}")
        return cls(**values)  # type: ignore[arg-type]

    def params(self) -> dict[str, str]:
        """Return the upload's id and token as query parameters."""
        return {"upload_id": self.upload_id, "upload_token": self.upload_token}


@dataclass(slots=True, repr=False)
class CopyObjectResult(_CompactRepr):
    """The outcome of a server-side copy.

    Attributes:
        source_path: The path copied from.
        destination_path: The path copied to.

    """

    source_path: str = ""
    destination_path: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CopyObjectResult:
        """Build from a copy response."""
        return cls(source_path=_text(data, "source_path"), destination_path=_text(data, "destination_path"))


@dataclass(slots=True, repr=False)
class CommitResult(_CompactRepr):
    """The outcome of committing a session.

    Attributes:
        status: ``"committed"`` or ``"approval_required"``.
        commit_id: The new commit, when committed.
        web_url: Where a human approves the changes, when approval is required.

    """

    status: str
    commit_id: str | None = None
    web_url: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommitResult:
        """Build from a commit response (``{commit_id}`` or the approval-required body)."""
        if data.get("approval_required") or (data.get("web_url") and not data.get("commit_id")):
            return cls(status="approval_required", web_url=_optional_text(data, "web_url"))
        return cls(status="committed", commit_id=_optional_text(data, "commit_id"))


def parse_content_length(value: str | None) -> int | None:
    """Parse a ``Content-Length`` header value, ``None`` when absent or malformed."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def parse_reproducible(value: str | None) -> bool | None:
    """Map ``X-Tilde-Reproducible`` to a bool: ``true``/``false`` (any case), anything else ``None``."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None
