"""JSON shapes of the contract's entities (CONTRACT §8), built from registry records and engine values."""

from __future__ import annotations

from typing import Any

from tilde.server._ids import rfc3339
from tilde.server.registry import (
    AgentRecord,
    KeyRecord,
    MemberRecord,
    OrgRecord,
    RepoRecord,
    RoleRecord,
)
from tilde.server.storage import ChangeItem, CommitInfo, ListingItem, ObjectVersion


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
    return {
        "organization_id": member.organization_id,
        "user_id": member.user_id,
        "username": member.username,
        "full_name": member.full_name,
        "email": member.email,
        "joined_at": member.joined_at,
    }


def repo_json(repo: RepoRecord) -> dict[str, Any]:
    """Return a Repository (with the legacy and extension fields)."""
    return {
        "id": repo.id,
        "organization_id": repo.organization_id,
        "name": repo.name,
        "description": repo.description,
        "visibility": repo.visibility,
        "retention_days": repo.retention_days,
        "session_max_duration_days": repo.session_max_duration_days,
        "agent_commits_require_approval": repo.agent_commits_require_approval,
        "created_by_type": repo.created_by_type,
        "created_by": repo.created_by,
        "created_at": repo.created_at,
    }


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
    """Return an Entry (note ``e_tag`` with an underscore, as in the contract)."""
    return {
        "last_modified": rfc3339(version.last_modified),
        "size": version.size,
        "e_tag": version.etag,
        "metadata": dict(version.metadata),
        "content_type": version.content_type,
    }


def listing_json(item: ListingItem) -> dict[str, Any]:
    """Return a ListingEntry (``status`` only in diffs)."""
    body: dict[str, Any] = {"path": item.path, "type": item.type}
    if item.version is not None:
        body["entry"] = entry_json(item.version)
    if item.status is not None:
        body["status"] = item.status
    return body


def change_json(item: ChangeItem) -> dict[str, Any]:
    """Return an EntryRecord; a staged deletion has no ``entry`` and ``deleted: true``."""
    if item.version is None:
        return {"path": item.path, "deleted": True}
    return {"path": item.path, "entry": entry_json(item.version)}


def agent_json(agent: AgentRecord) -> dict[str, Any]:
    """Return an Agent."""
    return {
        "id": agent.id,
        "organization_id": agent.organization_id,
        "name": agent.name,
        "description": agent.description,
        "metadata": agent.metadata,
        "inline_policy": agent.inline_policy,
        "inline_policy_updated_at": agent.inline_policy_updated_at,
        "created_by_type": agent.created_by_type,
        "created_by": agent.created_by,
        "created_by_name": agent.created_by_name,
        "created_at": agent.created_at,
        "last_used_at": agent.last_used_at,
    }


def role_json(role: RoleRecord) -> dict[str, Any]:
    """Return a Role."""
    return {
        "id": role.id,
        "organization_id": role.organization_id,
        "name": role.name,
        "description": role.description,
        "created_by_type": role.created_by_type,
        "created_by": role.created_by,
        "created_by_name": role.created_by_name,
        "created_at": role.created_at,
        "last_used_at": role.last_used_at,
    }


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
