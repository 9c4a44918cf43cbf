"""Applying commits and reverting them (part of ``StorageEngine``).

A commit closes the previous version of each changed path and inserts the new ones, so it costs O(changes);
its tree id and counters are derived from the parent's the same way.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import replace

from tilde.server.storage._base import ActorLike, EngineBase, check_metadata, to_actor
from tilde.server.storage._time import from_micros, now_micros
from tilde.server.storage.errors import InvalidArgument, NotFound
from tilde.server.storage.metadata import KeyRange, MetadataTx, RepoRecord, VersionRecord
from tilde.server.storage.treehash import EMPTY_TREE, update_tree_id
from tilde.server.storage.types import Actor, CommitInfo

__all__ = ["BATCH", "CommitsMixin"]

BATCH = 1000


class CommitsMixin(EngineBase):
    """Creates commits on top of a repository's head."""

    def _commit(
        self,
        tx: MetadataTx,
        repo: RepoRecord,
        changes: list[tuple[str, VersionRecord | None]],
        *,
        message: str,
        committer: Actor,
        metadata: Mapping[str, str],
    ) -> CommitInfo:
        """Apply changes on top of the head as a new commit, inside the caller's write transaction."""
        parent = tx.get_commit_at(repo.repo_id, repo.head_seq) if repo.head_seq else None
        seq = repo.head_seq + 1
        closed, inserted = tx.apply_changes(repo.repo_id, seq, changes)
        tree_id = update_tree_id(
            parent.tree_id if parent else EMPTY_TREE,
            added=((v.path, '"' + v.sha256 + '"') for v in inserted),
            removed=((v.path, '"' + v.sha256 + '"') for v in closed),
        )
        created_us = now_micros()
        identity = json.dumps(
            [repo.repo_id, seq, repo.head_commit_id, tree_id, message, created_us, uuid.uuid4().hex],
            separators=(",", ":"),
        )
        commit = CommitInfo(
            id=hashlib.sha256(identity.encode("utf-8")).hexdigest(),
            repo_id=repo.repo_id,
            seq=seq,
            parent_id=repo.head_commit_id,
            message=message,
            committer=committer,
            metadata=dict(metadata),
            created_at=from_micros(created_us),
            tree_id=tree_id,
            object_count=(parent.object_count if parent else 0) + len(inserted) - len(closed),
            total_size=(parent.total_size if parent else 0)
            + sum(v.size for v in inserted)
            - sum(v.size for v in closed),
        )
        tx.insert_commit(commit)
        tx.set_head(repo.repo_id, seq, commit.id)
        return commit

    # Revert

    def revert(
        self,
        repo_id: str,
        commit_id: str,
        *,
        actor: ActorLike,
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> CommitInfo:
        """Commit, on top of the head, the state each path changed by ``commit_id`` had before it.

        Args:
            repo_id: The repository.
            commit_id: The commit to undo.
            actor: Who reverts.
            message: Defaults to ``Revert "<original message>"``.
            metadata: Commit metadata.

        Returns:
            The new commit.

        Raises:
            NotFound: Unknown repository or commit.
            InvalidArgument: The commit is the first one (it has no parent).

        """
        committer = to_actor(actor)
        meta = check_metadata(metadata)
        with self.meta.write() as tx:
            repo = self._locked_repo(tx, repo_id)
            target = tx.get_commit(repo_id, commit_id)
            if target is None:
                raise NotFound(f"commit '{commit_id}'")
            if target.parent_id is None:
                raise InvalidArgument("the first commit has no parent to revert to", code="invalid_revert")
            before = target.seq - 1
            now = now_micros()
            changes: list[tuple[str, VersionRecord | None]] = []
            keys = KeyRange()
            while True:
                paths = tx.changed_paths(repo_id, before, target.seq, keys, BATCH)
                for path in paths:
                    old = tx.version_at(repo_id, path, before)
                    changes.append((path, None if old is None else replace(old, modified_us=now)))
                if len(paths) < BATCH:
                    break
                keys = KeyRange(paths[-1], False)
            return self._commit(
                tx,
                repo,
                changes,
                message=message if message is not None else f'Revert "{target.message}"',
                committer=committer,
                metadata=meta,
            )
