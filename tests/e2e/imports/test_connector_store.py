"""The connector store on its own: sealed credentials, re-sealing under a new master key, the import slot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tilde.server.connectors import ConnectorStore
from tilde.server.crypto import DecryptionError, SecretBox
from tilde.server.errors import ApiError

CONFIG = {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "very-secret-value", "region": "us-east-1"}


def test_credentials_are_sealed_and_reencrypted_under_a_new_key(tmp_path: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    path = tmp_path / "registry.sqlite3"
    store = ConnectorStore(path, SecretBox([old]))
    try:
        record = store.create_connector(
            "org-1",
            name="c",
            type="s3",
            source_uri="s3://bucket/",
            display_source="s3://bucket/",
            config=CONFIG,
            created_by_type="user",
            created_by="u",
        )
        assert store.open_config(record) == CONFIG
        assert b"very-secret-value" not in path.read_bytes() + Path(str(path) + "-wal").read_bytes()

        rotated = SecretBox([new, old])
        assert store.reencrypt_all(rotated) == 1
        assert store.reencrypt_all(rotated) == 0  # already under the new key
    finally:
        store.close()
    only_new = ConnectorStore(path, SecretBox([new]))
    try:
        assert only_new.open_config(only_new.get_connector("org-1", record.id)) == CONFIG
    finally:
        only_new.close()
    only_old = ConnectorStore(path, SecretBox([old]))
    try:
        with pytest.raises(DecryptionError):
            only_old.open_config(only_old.get_connector("org-1", record.id))
    finally:
        only_old.close()


def test_one_active_import_per_repository(tmp_path: Path) -> None:
    store = ConnectorStore(tmp_path / "registry.sqlite3", SecretBox([os.urandom(32)]))
    fields = {
        "org_id": "o",
        "destination_path": "",
        "source_prefix": "",
        "commit_message": "m",
        "created_by_type": "user",
        "created_by": "u",
        "created_by_name": "alice",
    }
    try:
        first = store.create_job(repo_id="r1", **fields)
        with pytest.raises(ApiError) as raised:
            store.create_job(repo_id="r1", **fields)
        assert raised.value.status == 409
        store.create_job(repo_id="r2", **fields)  # another repository is independent
        store.update_job(first.id, status="failed")
        assert store.create_job(repo_id="r1", **fields).status == "pending"
    finally:
        store.close()
