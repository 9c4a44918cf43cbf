"""`Registry.get_org_and_repo`: a request's organization and repository in one query, as the look-ups say."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tilde.server.config import ServerConfig
from tilde.server.errors import ApiError
from tilde.server.registry import Registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    opened = Registry(ServerConfig(data_dir=tmp_path).database("registry"))
    yield opened
    opened.close()


def _repo(registry: Registry, org_id: str, name: str, **fields: object) -> str:
    return registry.create_repo(org_id, name, dict(fields), ("user", registry.admin.id)).id


def test_both_rows_are_the_ones_the_single_look_ups_give(registry: Registry) -> None:
    org = registry.create_org("acme", "Acme", None)
    _repo(registry, org.id, "data", description="d", retention_days=7, agent_commits_require_approval=True)
    found_org, found_repo = registry.get_org_and_repo("acme", "data")
    assert found_org == registry.get_org("acme")
    assert found_repo == registry.get_repo(org.id, "data")
    assert found_repo is not None
    assert found_repo.agent_commits_require_approval is True


def test_a_missing_or_deleted_repository_is_none_beside_its_organization(registry: Registry) -> None:
    org = registry.create_org("acme", "Acme", None)
    other = registry.create_org("other", "Other", None)
    _repo(registry, other.id, "elsewhere")
    registry.delete_repo(_repo(registry, org.id, "gone"))
    assert registry.get_org_and_repo("acme", "nothing") == (org, None)
    assert registry.get_org_and_repo("acme", "gone") == (org, None)
    # A repository of another organization is not this one's.
    assert registry.get_org_and_repo("acme", "elsewhere") == (org, None)


def test_an_unknown_or_deleted_organization_is_a_404(registry: Registry) -> None:
    org = registry.create_org("acme", "Acme", None)
    _repo(registry, org.id, "data")
    registry.delete_org(org.id)
    for name in ("acme", "nobody"):
        with pytest.raises(ApiError) as raised:
            registry.get_org_and_repo(name, "data")
        assert raised.value.status == 404
        assert raised.value.message == f"organization {name!r} not found"
