"""A registry made before IAM existed opens in place: owners recognised, built-in policies seeded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tilde.server.registry import Registry

OLD_SCHEMA = """
CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, full_name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);
CREATE TABLE organizations (id TEXT PRIMARY KEY, name TEXT NOT NULL, display_name TEXT NOT NULL,
    created_at TEXT NOT NULL, deleted_at TEXT);
CREATE TABLE memberships (org_id TEXT NOT NULL, user_id TEXT NOT NULL, joined_at TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id));
INSERT INTO users VALUES ('u-creator', 'creator', '', '', '2025-01-01T00:00:00Z');
INSERT INTO users VALUES ('u-later', 'later', '', '', '2025-01-01T00:00:00Z');
INSERT INTO organizations VALUES ('o-1', 'acme', 'Acme', '2025-01-02T00:00:00Z', NULL);
INSERT INTO memberships VALUES ('o-1', 'u-creator', '2025-01-02T00:00:00Z');
INSERT INTO memberships VALUES ('o-1', 'u-later', '2025-02-01T00:00:00Z');
"""


def test_an_old_registry_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    registry = Registry(path)
    try:
        assert registry.is_owner("o-1", "u-creator")
        assert not registry.is_owner("o-1", "u-later")
        assert registry.is_member("o-1", "u-later")
        names = {p.name for p in registry.list_policies("o-1", "", 100)[0] if p.is_builtin}
        assert names == {"FullAccess", "ReadOnly", "ReadWrite"}
    finally:
        registry.close()
    reopened = Registry(path)  # a second start changes nothing and adds no duplicates
    try:
        assert len(reopened.list_policies("o-1", "", 100)[0]) == 3
    finally:
        reopened.close()
