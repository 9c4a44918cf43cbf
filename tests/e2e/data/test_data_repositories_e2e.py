"""Repositories against a real server: create, list, lazy handles, update, refresh, delete."""

from __future__ import annotations

import pytest

from tilde.core.errors import ConflictError, NotFoundError
from tilde.data import Client, Repositories, Repository


def test_repository_lifecycle(client: Client, org_name: str) -> None:
    repos = Repositories(client, org_name)
    created = repos.create("lifecycle", description="first", retention_days=30)
    assert isinstance(created, Repository)
    assert created.name == "lifecycle"
    assert created.id
    assert created.description == "first"
    assert created.visibility == "private"
    with pytest.raises(ConflictError):
        repos.create("lifecycle")

    repos.create("second")
    listed = list(repos.list(page_size=1))
    assert sorted(repo.name for repo in listed) == ["lifecycle", "second"]
    assert all(repo.id for repo in listed)

    lazy = client.repository(f"{org_name}/lifecycle")
    assert lazy.id == created.id  # loaded on first access
    assert lazy.created_at is not None
    assert lazy.update(description="second version") is lazy
    assert lazy.description == "second version"
    assert repos.get("lifecycle").refresh().description == "second version"

    lazy.delete()
    with pytest.raises(NotFoundError):
        repos.get("lifecycle").refresh()
    repos.delete("second")
    assert list(repos.list()) == []


def test_missing_repository_fails_on_first_use(client: Client, org_name: str) -> None:
    ghost = client.repository(f"{org_name}/ghost")
    with pytest.raises(NotFoundError):
        _ = ghost.description
    with pytest.raises(NotFoundError):
        ghost.session()
