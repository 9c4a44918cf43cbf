"""Value types and timestamp parsing: pure functions, no client."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tilde.data._timestamps import parse_timestamp
from tilde.data.models import (
    CommitResult,
    Entry,
    EntryRecord,
    ListingEntry,
    ObjectMetadata,
    PutObjectResult,
    SourceMetadata,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-14T10:00:00Z", datetime(2026, 5, 14, 10, tzinfo=timezone.utc)),
        ("2026-05-14T10:00:00.5Z", datetime(2026, 5, 14, 10, 0, 0, 500000, tzinfo=timezone.utc)),
        ("2026-05-14T10:00:00.123456789Z", datetime(2026, 5, 14, 10, 0, 0, 123456, tzinfo=timezone.utc)),
        ("2026-05-14T10:00:00+02:00", datetime(2026, 5, 14, 8, tzinfo=timezone.utc)),
        ("2026-05-14T10:00:00-0130", datetime(2026, 5, 14, 11, 30, tzinfo=timezone.utc)),
        ("2026-05-14 10:00:00", datetime(2026, 5, 14, 10, tzinfo=timezone.utc)),
        ("2026-05-14T10:00z", datetime(2026, 5, 14, 10, tzinfo=timezone.utc)),
    ],
)
def test_timestamps_parse_leniently(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("value", [None, "", "  ", "yesterday", 17, "2026-13-45T99:00:00Z"])
def test_timestamps_reject_garbage_as_none(value: object) -> None:
    assert parse_timestamp(value) is None


def test_naive_datetime_is_taken_as_utc() -> None:
    parsed = parse_timestamp(datetime(2026, 1, 1))
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)


def test_entry_from_dict_tolerates_nulls_and_keeps_quotes() -> None:
    entry = Entry.from_dict(
        {
            "last_modified": "2026-05-14T10:00:00Z",
            "size": 11,
            "e_tag": '"abc"',
            "metadata": None,
            "content_type": None,
            "source_metadata": {"connector_id": "c1", "import_time": "2026-05-14T10:00:00.1Z"},
        }
    )
    assert entry.size == 11
    assert entry.e_tag == '"abc"'
    assert entry.metadata == {}
    assert entry.content_type == ""
    assert entry.source_metadata == SourceMetadata(
        connector_id="c1", import_time=datetime(2026, 5, 14, 10, 0, 0, 100000, tzinfo=timezone.utc)
    )


def test_listing_entries_for_objects_prefixes_and_diffs() -> None:
    prefix = ListingEntry.from_dict({"path": "data/", "type": "prefix"})
    assert prefix == ListingEntry(path="data/", type="prefix")
    assert prefix.entry is None
    removed = ListingEntry.from_dict(
        {"path": "a", "type": "object", "status": "removed", "entry": {"size": 1}}
    )
    assert removed.status == "removed"
    assert removed.entry is not None
    assert removed.entry.size == 1
    assert EntryRecord.from_dict({"path": "gone"}) == EntryRecord(path="gone")


def test_reprs_omit_defaults() -> None:
    assert repr(ListingEntry(path="a", type="object")) == "ListingEntry(path='a', type='object')"
    assert repr(Entry()) == "Entry()"
    assert repr(Entry(size=3, metadata={"k": "v"})) == "Entry(size=3, metadata={'k': 'v'})"
    assert (
        repr(CommitResult(status="committed", commit_id="c1"))
        == "CommitResult(status='committed', commit_id='c1')"
    )
    assert repr(PutObjectResult(path="p")) == "PutObjectResult(path='p')"


def test_value_types_use_slots() -> None:
    with pytest.raises(AttributeError):
        Entry().unknown = 1  # type: ignore[attr-defined]


def test_object_metadata_from_headers() -> None:
    headers = httpx.Headers(
        {"ETag": '"e"', "Content-Type": "text/plain", "Content-Length": "12", "X-Tilde-Reproducible": "TRUE"}
    )
    assert ObjectMetadata.from_headers(headers) == ObjectMetadata(
        etag='"e"', content_type="text/plain", content_length=12, reproducible=True
    )
    odd = ObjectMetadata.from_headers(httpx.Headers({"Content-Length": "x", "X-Tilde-Reproducible": "maybe"}))
    assert odd == ObjectMetadata()


def test_commit_result_from_both_commit_bodies() -> None:
    assert CommitResult.from_dict({"commit_id": "c"}) == CommitResult(status="committed", commit_id="c")
    approval = CommitResult.from_dict({"approval_required": True, "web_url": "https://x/approve/s"})
    assert approval == CommitResult(status="approval_required", web_url="https://x/approve/s")
