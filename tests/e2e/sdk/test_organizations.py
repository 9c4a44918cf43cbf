"""tilde-admin organizations and members, and the facade, over real HTTP against tilde-server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

import tilde
from tilde.admin import Member, Organization

if TYPE_CHECKING:
    from tilde.server import LocalServer


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: LocalServer) -> Iterator[tilde.Client]:
    with tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as c:
        yield c


def test_create_get_list_delete(client: tilde.Client) -> None:
    name = unique_name("org")
    created = client.organizations.create(name, "Display " + name)
    assert isinstance(created, Organization)
    assert (created.name, created.display_name) == (name, "Display " + name)
    assert created.id
    assert created.created_at is not None
    assert created.created_at.tzinfo is not None
    assert repr(created) == f"Organization({name!r})"

    fetched = client.organizations.get(name)
    assert (fetched.id, fetched.display_name) == (created.id, created.display_name)
    assert name in [o.name for o in client.organizations.list()]
    assert len(list(client.organizations.list(amount=1))) == 1
    assert list(client.organizations.list(amount=0)) == []

    client.organizations.delete(name)
    with pytest.raises(tilde.NotFoundError):
        client.organizations.get(name)


def test_organization_delete_and_duplicate(client: tilde.Client) -> None:
    name = unique_name("org")
    org = client.organizations.create(name, name)
    with pytest.raises(tilde.ConflictError):
        client.organizations.create(name, "again")
    org.delete()
    assert name not in [o.name for o in client.organizations.list()]


def test_invalid_name_is_a_bad_request(client: tilde.Client) -> None:
    with pytest.raises(tilde.BadRequestError):
        client.organizations.create("Not A Slug!", "x")


def test_repositories_of_an_organization(client: tilde.Client, org_name: str) -> None:
    org = client.organizations.get(org_name)
    repo = org.repositories.create("data", description="from the org")
    # Handles built through the organization are the facade's composed class.
    assert isinstance(repo, tilde.Client.repository_class)
    assert repo.description == "from the org"
    assert [r.name for r in org.repositories.list()] == ["data"]
    handle = org.repositories.get("data")
    assert handle.id == repo.id


def test_members(client: tilde.Client, org_name: str) -> None:
    members = client.organizations.get(org_name).members
    assert repr(members) == f"Members(org={org_name!r})"

    creator = list(members.list())
    assert len(creator) == 1
    me = creator[0]
    assert isinstance(me, Member)
    assert me.user_id
    assert me.username
    assert me.joined_at is not None
    assert members.get(me.username).user_id == me.user_id
    assert members.get(me.user_id).username == me.username

    alice = members.create("alice-" + unique_name("u"))
    assert alice.user_id
    assert alice.user_id != me.user_id
    assert {m.user_id for m in members.list()} == {me.user_id, alice.user_id}
    assert repr(alice) == f"Member({alice.username!r})"

    alice.delete()
    assert [m.user_id for m in members.list()] == [me.user_id]
    with pytest.raises(tilde.NotFoundError):
        members.delete(alice.user_id)


def test_unknown_member_is_not_found_client_side(client: tilde.Client, org_name: str) -> None:
    with pytest.raises(tilde.NotFoundError) as info:
        client.organizations.get(org_name).members.get("nobody-here")
    assert info.value.status_code == 404
    assert "nobody-here" in info.value.message


def test_module_level_shortcuts(server: LocalServer, repo_path: str) -> None:
    tilde.configure(api_key=server.api_key, endpoint_url=server.endpoint_url)
    try:
        org = repo_path.partition("/")[0]
        assert org in [o.name for o in tilde.organizations.list()]
        repo = tilde.repository(repo_path)
        assert repo.id  # loads over HTTP
        with repo.session() as session:
            session.objects.put("hello.txt", b"hi")
            commit_id = session.commit("hello")
        assert next(repo.commits.list()).id == commit_id
    finally:
        default = tilde._default_client
        tilde._default_client = None
        if default is not None:
            default.close()


def test_admin_client_alone(server: LocalServer, org_name: str) -> None:
    # The ready-made client of tilde-admin, as an install without tilde-compute would use it.
    from tilde.admin import AdminRepositoryMixin, Client

    with Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as client:
        assert org_name in [o.name for o in client.organizations.list()]
        repo = client.organizations.get(org_name).repositories.create("admin-only")
        assert isinstance(repo, AdminRepositoryMixin)
        assert not hasattr(repo, "shell")
        path = f"/organizations/{org_name}/repositories/admin-only/secrets"
        assert repr(repo.secrets) == f"Secrets(path={path!r})"
