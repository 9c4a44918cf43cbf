"""JSON shapes of the contract's entities (CONTRACT §8), built from registry records and engine values."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tilde.server._ids import rfc3339
from tilde.server.registry import (
    AgentRecord,
    KeyRecord,
    MemberRecord,
    OrgRecord,
    RepoRecord,
    RoleRecord,
)
from tilde.server.storage import ChangeItem, CommitInfo, ListingItem, ObjectVersion, Page
from tilde.server.storage.metadata import VersionRecord

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


#: Field names of each record class, looked up once (``dataclasses.fields`` builds a tuple on every call).
_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _as_json(record: DataclassInstance) -> dict[str, Any]:
    """Return a record whose fields are its contract entity's, one for one, as that entity's object."""
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(field.name for field in fields(record))
    return {name: getattr(record, name) for name in names}


def org_json(org: OrgRecord) -> dict[str, Any]:
    """Return an Organization."""
    return {
        "id": org.id,
        "name": org.name,
        "display_name": org.display_name,
        "created_at": org.created_at,
        "status": "active",
        "notes": "",
    }


def member_json(member: MemberRecord) -> dict[str, Any]:
    """Return a Membership."""
    return _as_json(member)


def repo_json(repo: RepoRecord) -> dict[str, Any]:
    """Return a Repository (with the legacy and extension fields).

    ``retention_days`` is an integer in the contract, so a repository that never set one leaves it out
    rather than sending ``null``.
    """
    body = _as_json(repo)
    if body["retention_days"] is None:
        del body["retention_days"]
    return body


def commit_json(commit: CommitInfo) -> dict[str, Any]:
    """Return a CommitLog."""
    return {
        "id": commit.id,
        "committer": commit.committer.name,
        "committer_type": commit.committer.type,
        "committer_id": commit.committer.id,
        "message": commit.message,
        "creation_date": rfc3339(commit.created_at),
        "parents": [commit.parent_id] if commit.parent_id else [],
        "metadata": dict(commit.metadata),
        "is_stale": False,
        "meta_range_id": commit.tree_id,
        "object_count": commit.object_count,
        "total_size": commit.total_size,
    }


def entry_json(version: ObjectVersion) -> dict[str, Any]:
    """Return an Entry (note ``e_tag`` with an underscore, as in the contract).

    Imported objects also carry ``source_metadata`` (where they came from); other objects have none.
    """
    body: dict[str, Any] = {
        "last_modified": rfc3339(version.last_modified),
        "size": version.size,
        "e_tag": version.etag,
        "metadata": dict(version.metadata),
        "content_type": version.content_type,
    }
    if version.source_metadata:
        body["source_metadata"] = dict(version.source_metadata)
    return body


def listing_json(item: ListingItem) -> dict[str, Any]:
    """Return a ListingEntry (``status`` only in diffs)."""
    body: dict[str, Any] = {"path": item.path, "type": item.type}
    if item.version is not None:
        body["entry"] = entry_json(item.version)
    if item.status is not None:
        body["status"] = item.status
    return body


def listing_page_bytes(page: Page[VersionRecord | str], max_per_page: int) -> bytes:
    """Encode a page of listing rows (`StorageEngine.list_records`) as the paginated envelope of entries.

    The same document as `listing_json` of each item inside ``{results, pagination}``, encoded as Starlette's
    `JSONResponse` does, but built straight from the stored rows: no value object or datetime per entry.

    Raises:
        RuntimeError: ``has_more`` without a cursor (a client would loop on the first page forever).

    """
    if page.has_more and not page.next_cursor:
        raise RuntimeError("has_more without a cursor")
    results: list[dict[str, Any]] = []
    for row in page.items:
        if isinstance(row, str):
            results.append({"path": row, "type": "prefix"})
            continue
        entry: dict[str, Any] = {
            "last_modified": _micros_rfc3339(row.modified_us),
            "size": row.size,
            "e_tag": '"' + row.sha256 + '"',
            "metadata": dict(row.metadata),
            "content_type": row.content_type,
        }
        if row.source_metadata:
            entry["source_metadata"] = dict(row.source_metadata)
        results.append({"path": row.path, "type": "object", "entry": entry})
    document = {
        "results": results,
        "pagination": {
            "has_more": page.has_more,
            "next_offset": page.next_cursor if page.has_more else "",
            "max_per_page": max_per_page,
        },
    }
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


_EPOCH = datetime(1970, 1, 1)


def _micros_rfc3339(us: int) -> str:
    """`rfc3339` of a time in microseconds since the epoch (UTC), without an aware datetime in between."""
    return (_EPOCH + timedelta(microseconds=us)).isoformat(timespec="microseconds") + "Z"


def change_json(item: ChangeItem) -> dict[str, Any]:
    """Return an EntryRecord; a staged deletion has no ``entry`` and ``deleted: true``."""
    if item.version is None:
        return {"path": item.path, "deleted": True}
    return {"path": item.path, "entry": entry_json(item.version)}


def agent_json(agent: AgentRecord) -> dict[str, Any]:
    """Return an Agent.

    ``metadata`` holds strings; a value of another type, stored before the API required strings, is sent as
    its JSON text.
    """
    body = _as_json(agent)
    body["metadata"] = {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in agent.metadata.items()
    }
    return body


def role_json(role: RoleRecord) -> dict[str, Any]:
    """Return a Role."""
    return _as_json(role)


def key_json(key: KeyRecord) -> dict[str, Any]:
    """Return an APIToken (never the token itself)."""
    return {
        "id": key.id,
        "user_id": key.principal_id,
        "name": key.name,
        "description": key.description,
        "token_hint": key.token_hint,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }
