"""Helpers shared by the storage engine tests."""

from __future__ import annotations

from tilde.server.storage import Actor, BlobRef, ObjectVersion, StorageEngine

ALICE = Actor(type="user", id="u-alice", name="Alice")
BOB = Actor(type="agent", id="a-bob", name="Bob")


def store(engine: StorageEngine, data: bytes) -> BlobRef:
    """Write bytes to the blob store."""
    with engine.blobs.open_writer() as writer:
        writer.write(data)
        return writer.commit()


def put(
    engine: StorageEngine, repo: str, session_id: str, path: str, data: bytes, **kwargs: object
) -> ObjectVersion:
    """Store bytes and stage them at ``path``."""
    return engine.stage_blob(repo, session_id, path, store(engine, data), **kwargs)  # type: ignore[arg-type]


def read(engine: StorageEngine, version: ObjectVersion) -> bytes:
    """The bytes of an object version."""
    return engine.blob_path(version.blob).read_bytes()


def commit_files(engine: StorageEngine, repo: str, files: dict[str, bytes | None], message: str = "m") -> str:
    """Commit writes (bytes) and deletions (None) in one session; returns the commit id."""
    session = engine.create_session(repo, ALICE)
    for path, data in files.items():
        if data is None:
            engine.stage_delete(repo, session.id, path)
        else:
            put(engine, repo, session.id, path, data)
    outcome = engine.commit_session(repo, session.id, message=message, actor=ALICE)
    assert outcome.status == "committed"
    assert outcome.commit is not None
    return outcome.commit.id
