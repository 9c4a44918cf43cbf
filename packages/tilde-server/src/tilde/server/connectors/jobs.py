"""`ImportRunner`: import jobs in worker threads, each ending in exactly one commit or in no change at all.

A job goes ``pending → running → completed | failed``. The worker opens a storage session as the principal
that created the job, streams every source object into the blob store, stages them in batches (bumping
``objects_imported`` as it goes) and commits once with the job's message. Any failure rolls the session back,
so the repository is left exactly as it was, and records a readable ``error``.

An import that finds no object under its prefix fails ("nothing to import") rather than completing without a
commit: an empty result almost always means a mistyped prefix.

Jobs still ``pending`` or ``running`` at start-up were cut short by a stop or a crash: they are marked
``failed`` and their sessions rolled back. On shutdown running jobs stop between chunks and fail the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tilde.server._ids import utc_now
from tilde.server.connectors.sources import (
    ImportFailed,
    ImportSource,
    LocalSource,
    RepositorySource,
    S3Source,
    SourceObject,
)
from tilde.server.connectors.spec import parse_s3_uri
from tilde.server.connectors.store import ConnectorStore, ImportJobRecord
from tilde.server.errors import ApiError
from tilde.server.registry import Registry
from tilde.server.storage import Actor, NewObject, StorageEngine, StorageError, validate_path

__all__ = ["ImportRunner", "source_base"]

logger = logging.getLogger("tilde.server.imports")

#: Stage at least this often (objects / seconds), so progress shows while a job runs.
_BATCH_OBJECTS = 100
_BATCH_SECONDS = 0.5
_WORKERS = 2


def source_base(connector_type: str, source_uri: str, source_prefix: str) -> str:
    """Return the prefix an import lists: the request's ``source_prefix`` or else the connector's own prefix.

    For ``s3`` both are bucket keys (``source_prefix`` must lie inside the connector's prefix); for ``local``
    both are paths relative to the connector's directory, whose own prefix is empty.
    """
    if connector_type == "s3":
        return source_prefix or parse_s3_uri(source_uri).prefix
    return source_prefix


class ImportRunner:
    """Runs import jobs in a small thread pool (``app.state.import_runner``).

    Args:
        store: Jobs and connectors.
        engine: The storage engine.
        registry: Organizations and repositories (to announce the commit and find sources).
        on_commit: Called with ``(org_name, repo_record, commit)`` after each import's commit.

    """

    def __init__(
        self,
        store: ConnectorStore,
        engine: StorageEngine,
        registry: Registry,
        on_commit: Any = None,
        *,
        node_id: str | None = None,
        node_alive: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.registry = registry
        self.on_commit = on_commit
        #: This replica's node id in a cluster (None: a server alone, which owns every job).
        self.node_id = node_id
        self._node_alive = node_alive
        self._stop = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="tilde-import")

    def _orphaned(self, job: ImportJobRecord) -> bool:
        """Whether nobody runs an unfinished job any more: this node's own from before, or a dead node's."""
        if self.node_id is None or job.node_id is None or job.node_id == self.node_id:
            return True
        return self._node_alive is not None and not self._node_alive(job.node_id)

    def recover(self) -> int:
        """Fail the jobs a previous run left unfinished and roll their sessions back; return how many.

        In a cluster these are this node's jobs from before a restart and those of nodes no longer alive;
        jobs that other live replicas are running are theirs.
        """
        jobs = [job for job in self.store.unfinished_jobs() if self._orphaned(job)]
        for job in jobs:
            self._rollback(job.repo_id, job.session_id)
            self.store.update_job(
                job.id,
                status="failed",
                error="the server stopped before the import finished",
                objects_imported=0,
            )
        return len(jobs)

    def submit(self, job: ImportJobRecord) -> None:
        """Start a pending job in the background."""
        try:
            self._executor.submit(self._run, job)
        except RuntimeError:  # shutting down
            self.store.update_job(job.id, status="failed", error="the server is shutting down")

    def shutdown(self) -> None:
        """Stop running jobs (they fail and roll back) and wait for the workers."""
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        # Jobs queued behind the running ones never started (other replicas' jobs are theirs).
        for job in self.store.unfinished_jobs():
            if self.node_id is not None and job.node_id != self.node_id:
                continue
            self._rollback(job.repo_id, job.session_id)
            self.store.update_job(job.id, status="failed", error="the server stopped during the import")

    # The worker

    def _run(self, job: ImportJobRecord) -> None:
        session_id: str | None = None
        committed = False
        try:
            self.store.update_job(job.id, status="running")
            source = self._source(job)
            actor = Actor(type=job.created_by_type, id=job.created_by, name=job.created_by_name)
            session_id = self.engine.create_session(job.repo_id, actor).id
            self.store.update_job(job.id, session_id=session_id)
            count = self._stage_all(job, source, session_id)
            if count == 0:
                raise ImportFailed(f"nothing to import: no objects under {self._describe(job)}")
            outcome = self.engine.commit_session(job.repo_id, session_id, job.commit_message, actor=actor)
            committed = True
            commit = outcome.commit
            self.store.update_job(
                job.id, status="completed", objects_imported=count, commit_id=commit.id if commit else ""
            )
            logger.info(
                "import %s completed: %d objects in commit %s", job.id, count, commit.id if commit else ""
            )
            if commit is not None and self.on_commit is not None:
                self._announce(job, commit)
        except ImportFailed as failure:
            self._fail(job, failure.message)
        except ApiError as error:
            self._fail(job, error.message)
        except StorageError as error:
            self._fail(job, f"the repository refused the import: {error.message}")
        except Exception:
            logger.exception("import %s failed unexpectedly", job.id)
            self._fail(job, "internal error while importing (see the server log)")
        finally:
            if not committed:
                self._rollback(job.repo_id, session_id)

    def _fail(self, job: ImportJobRecord, message: str) -> None:
        logger.warning("import %s failed: %s", job.id, message)
        self.store.update_job(job.id, status="failed", error=message, objects_imported=0)

    def _rollback(self, repo_id: str, session_id: str | None) -> None:
        if not session_id:
            return
        try:
            self.engine.rollback_session(repo_id, session_id)
        except StorageError:
            pass  # already closed, or the repository is gone: nothing staged survives either way

    def _announce(self, job: ImportJobRecord, commit: Any) -> None:
        try:
            org = self.registry.get_org_by_id(job.org_id)
            repo = self.registry.get_repo_by_id(job.repo_id)
            if org is not None:
                self.on_commit(org.name, repo, commit)
        except Exception:
            logger.exception("announcing the commit of import %s failed", job.id)

    @staticmethod
    def _describe(job: ImportJobRecord) -> str:
        if job.connector_id:
            return (
                f"prefix {job.source_prefix!r} of the connector"
                if job.source_prefix
                else "the connector's source"
            )
        return f"{job.source_organization}/{job.source_repository}/{job.source_prefix}"

    def _source(self, job: ImportJobRecord) -> ImportSource:
        if job.connector_id:
            connector = self.store.get_connector(job.org_id, job.connector_id)
            if connector.disabled:
                raise ImportFailed("the connector is disabled")
            config = self.store.open_config(connector)
            base = source_base(connector.type, connector.source_uri, job.source_prefix)
            if connector.type == "s3":
                return S3Source(connector.source_uri, config, base)
            return LocalSource(config["path"], base)
        if not job.source_repository_id:
            raise ImportFailed("the job names no source")
        try:
            self.registry.get_repo_by_id(job.source_repository_id)
        except ApiError:
            raise ImportFailed(
                f"source repository {job.source_organization}/{job.source_repository} no longer exists"
            ) from None
        return RepositorySource(self.engine, job.source_repository_id, job.source_prefix)

    def _stage_all(self, job: ImportJobRecord, source: ImportSource, session_id: str) -> int:
        count = 0
        batch: list[NewObject] = []
        flushed_at = time.monotonic()
        import_time = utc_now()
        for obj in source.objects():
            if self._stop.is_set():
                raise ImportFailed("the server stopped during the import")
            batch.append(self._fetch(job, source, obj, import_time))
            if len(batch) >= _BATCH_OBJECTS or time.monotonic() - flushed_at >= _BATCH_SECONDS:
                count += self.engine.stage_objects(job.repo_id, session_id, batch)
                batch = []
                flushed_at = time.monotonic()
                self.store.update_job(job.id, objects_imported=count)
        if batch:
            count += self.engine.stage_objects(job.repo_id, session_id, batch)
            self.store.update_job(job.id, objects_imported=count)
        return count

    def _fetch(
        self, job: ImportJobRecord, source: ImportSource, obj: SourceObject, import_time: str
    ) -> NewObject:
        path = job.destination_path + obj.relative
        try:
            validate_path(path)
        except StorageError as error:
            raise ImportFailed(
                f"source object {obj.key!r} cannot be stored as {path!r}: {error.message}"
            ) from None
        if obj.blob is not None:
            blob, content_type, version_id, etag = obj.blob, obj.content_type, obj.version_id, obj.etag
        else:
            with self.engine.blobs.open_writer() as writer:
                copied = source.copy_into(obj, writer, self._stop)
                blob = writer.commit()
            content_type, version_id = copied.content_type, copied.version_id
            etag = copied.etag or blob.sha256
        source_metadata = {
            "connector_id": job.connector_id or "",
            "connector_type": source.kind,
            "source_path": obj.key,
            "version_id": version_id,
            "source_etag": etag,
            "import_time": import_time,
            "import_job_id": job.id,
        }
        return NewObject(
            path=path,
            blob=blob,
            content_type=content_type,
            metadata=dict(obj.metadata),
            source_metadata=source_metadata,
        )
