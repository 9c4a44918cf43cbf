"""Sandbox records on disk (``<data_dir>/sandboxes/<id>/state.json``), so sandboxes outlive a server restart.

Finished sandboxes come back with their final status and logs. A sandbox that was still active when the
previous server process ended cannot be resumed: its session is rolled back and it reports
``failed/sandbox_lost``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from tilde.server.sandbox.egress import EgressPolicy
from tilde.server.sandbox.limits import RESOURCE_FIELDS, SandboxLimits
from tilde.server.sandbox.record import SandboxRecord
from tilde.server.sandbox.spec import SandboxSpec

__all__ = ["load_records", "record_from_state", "record_state", "save_record"]

logger = logging.getLogger("tilde.server.sandbox")

STATE_FILE = "state.json"
_LAYER_DIRS = ("lower", "upper", "work", "merged", "run")
_STATUS_FIELDS = ("status", "status_reason", "exit_code", "commit_id", "web_url", "error_message")


def _principal_json(principal: Any) -> dict[str, Any]:
    return {
        "type": principal.type,
        "id": principal.id,
        "name": principal.name,
        "org_id": getattr(principal, "org_id", None),
    }


def record_state(record: SandboxRecord) -> dict[str, Any]:
    """Return the JSON document of a sandbox's record (what `save_record` writes and a cluster shares)."""
    spec = record.spec
    return {
        "id": record.id,
        "org_name": record.org_name,
        "repo_id": record.repo.id,
        "principal": _principal_json(record.principal),
        "actor": _principal_json(record.actor),
        "spec": {**spec.to_json(), "command": spec.command, "run_as": spec.run_as},
        "image_note": record.image_note,
        "limits": record.limits.to_json(),
        "warnings": record.warnings,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "finished_at": record.finished_at,
        **{name: getattr(record, name) for name in _STATUS_FIELDS},
    }


def save_record(record: SandboxRecord) -> None:
    """Write a sandbox's record next to its log (atomically)."""
    state = record_state(record)
    path = record.directory / STATE_FILE
    temporary = path.with_name(STATE_FILE + ".tmp")
    temporary.write_text(json.dumps(state), encoding="utf-8")
    os.replace(temporary, path)


def record_from_state(
    state: dict[str, Any], repo: Any, directory: Path, cls: type[SandboxRecord] = SandboxRecord, **extra: Any
) -> SandboxRecord:
    """Rebuild a record from its `record_state` document.

    Args:
        state: The document.
        repo: The repository record (at least its ``id``).
        directory: The sandbox's directory on this machine.
        cls: The record class to build (`SandboxRecord` or a subclass).
        extra: Further fields of ``cls``.

    """
    from tilde.server.auth import Principal

    spec_json = dict(state["spec"])
    egress = spec_json.pop("egress", None)
    spec = SandboxSpec(
        **{k: v for k, v in spec_json.items() if k in SandboxSpec.__dataclass_fields__},
        egress=EgressPolicy(tuple(egress["allow"])) if egress else None,
    )
    record = cls(
        id=state["id"],
        org_name=state["org_name"],
        repo=repo,
        principal=Principal(**state["principal"]),
        actor=Principal(**state["actor"]),
        spec=spec,
        directory=directory,
        image_note=state.get("image_note", ""),
        limits=SandboxLimits(
            **{k: v for k, v in (state.get("limits") or {}).items() if k in RESOURCE_FIELDS}
        ),
        created_at=state["created_at"],
        updated_at=state["updated_at"],
        finished_at=state.get("finished_at"),
        **extra,
    )
    record.warnings.extend(state.get("warnings") or [])
    for name in _STATUS_FIELDS:
        setattr(record, name, state.get(name))
    return record


def load_records(root: Path, registry: Any, engine: Any, retained: int) -> list[SandboxRecord]:
    """Reload the sandboxes a previous server process left in ``root``, oldest first.

    Layer directories are removed; sandboxes that were active are rolled back and marked lost; only the newest
    ``retained`` sandboxes are kept (older ones are deleted with their logs).

    Args:
        root: The runtime's directory.
        registry: Resolves repository ids (None: nothing can be reloaded, everything is removed).
        engine: For rolling back lost sandboxes' sessions.
        retained: How many finished sandboxes to keep.

    Returns:
        The records.

    """
    from tilde.server.storage import StorageError

    loaded: list[SandboxRecord] = []
    for directory in root.iterdir():
        if directory.name.startswith(".") or not directory.is_dir():
            continue
        for name in _LAYER_DIRS:
            shutil.rmtree(directory / name, ignore_errors=True)
        try:
            state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
            repo = registry.get_repo_by_id(state["repo_id"]) if registry is not None else None
            if repo is None:
                raise LookupError(state["repo_id"])
            record = record_from_state(state, repo, directory)
        except Exception:
            # Unreadable, or its repository is gone: nothing to show any more.
            shutil.rmtree(directory, ignore_errors=True)
            continue
        if not record.is_terminal:
            try:
                if engine.get_session(repo.id, record.id).state == "open":
                    engine.rollback_session(repo.id, record.id)
            except StorageError:
                pass
            record.set_status(
                "failed", "sandbox_lost", error_message="the server stopped while the sandbox was running"
            )
            save_record(record)
        loaded.append(record)
    loaded.sort(key=lambda r: r.created_at)
    for record in loaded[: max(0, len(loaded) - retained)]:
        shutil.rmtree(record.directory, ignore_errors=True)
    return loaded[max(0, len(loaded) - retained) :]
