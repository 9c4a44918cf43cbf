"""The published README's admin sections, run with our SDK against a real tilde-server.

One test per section ("Organizations", "Members", "Groups", "Policies", "Roles and Agents", "API keys",
"Secrets"); "Connectors and Imports" and "Agent Approval Workflow" are in their own modules. The README's code
is kept as written, with assertions added between its lines. What is substituted, and why:

- ``"my-org"``, ``"alice"``: fresh names (one server serves the whole test session, so names must not clash);
- ``"user-uuid"``, ``"group-uuid"``, ``key_id``: the ids of the user, group and key the test created (the
  README leaves them to the reader);
- ``org`` and ``repo``, which the README's snippets take as given: an organization and a repository that the
  fixtures create with the server's admin key (an owner of every organization).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

import tilde
from tilde.exceptions import AuthenticationError, ForbiddenError, NotFoundError
from tilde.models import Commit, Organization, Repository

if TYPE_CHECKING:
    from tilde.server import LocalServer


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(server: LocalServer) -> Iterator[tilde.Client]:
    with tilde.Client(api_key=server.api_key, endpoint_url=server.endpoint_url) as c:
        yield c


@pytest.fixture
def org(client: tilde.Client, org_name: str) -> Organization:
    return client.organizations.get(org_name)


@pytest.fixture
def repo(client: tilde.Client, repo_path: str) -> Repository:
    return client.repository(repo_path)


@pytest.fixture
def user_id(org: Organization) -> str:
    """A second member of ``org`` (the README's ``"user-uuid"``)."""
    return org.members.create(unique_name("alice")).user_id


def usernames(org: Organization) -> list[str]:
    return [m.username for m in org.members.list()]


def test_organizations(admin_sdk: None, org_name: str) -> None:
    my_org = unique_name("my-org")
    # Create, list, get, delete at the module level
    org = tilde.organizations.create(my_org, display_name="My Org")
    assert (org.name, org.display_name) == (my_org, "My Org")
    for o in tilde.organizations.list():
        print(o.name, o.display_name)
    assert my_org in [o.name for o in tilde.organizations.list()]
    org = tilde.organizations.get(my_org)
    assert (org.name, org.display_name) == (my_org, "My Org")
    tilde.organizations.delete(my_org)
    with pytest.raises(NotFoundError):
        tilde.organizations.get(my_org)

    # The second snippet reads an organization that exists (the first one deleted "my-org").
    org = tilde.organizations.get(org_name)
    collections = (
        org.repositories,
        org.members,
        org.agents,
        org.roles,
        org.groups,
        org.policies,
        org.connectors,
    )
    for collection in collections:
        assert repr(collection).endswith(f"(org={org_name!r})"), collection
        assert callable(collection.list)


def test_organizations_as_a_plain_user(
    user_key: str, server: LocalServer, org_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same snippet with a human user's own key (from `tilde-server user create`) instead of the admin's.
    monkeypatch.setenv("TILDE_API_KEY", user_key)
    monkeypatch.setenv("TILDE_ENDPOINT_URL", server.endpoint_url)
    tilde._default_client = None
    try:
        my_org = unique_name("my-org")
        org = tilde.organizations.create(my_org, display_name="My Org")
        assert [o.name for o in tilde.organizations.list()] == [my_org]  # only their own organization
        org = tilde.organizations.get(my_org)
        org.repositories.create("data")  # its creator owns it
        assert [r.name for r in org.repositories.list()] == ["data"]
        with pytest.raises((ForbiddenError, NotFoundError)):
            tilde.organizations.get(org_name)  # someone else's organization
        tilde.organizations.delete(my_org)
        assert list(tilde.organizations.list()) == []
    finally:
        default = tilde._default_client
        tilde._default_client = None
        if default is not None:
            default.close()


def test_members(org: Organization) -> None:
    alice = unique_name("alice")
    for m in org.members.list():
        print(m.username, m.email)
    assert alice not in usernames(org)

    org.members.create(alice)  # add by username
    assert alice in usernames(org)
    user_id = org.members.get(alice).user_id
    org.members.delete(user_id)  # remove by user_id
    assert alice not in usernames(org)
    with pytest.raises(NotFoundError):
        org.members.delete(user_id)


def test_groups(org: Organization, user_id: str) -> None:
    groups = org.groups

    group = groups.create("engineers", description="Engineering team")
    assert (group.name, group.description) == ("engineers", "Engineering team")
    group = groups.get(group.id)  # includes members + attachments
    assert (group.name, list(group.members.list()), group.attachments) == ("engineers", [], [])
    group.members.create(subject_type="user", subject_id=user_id)
    assert [(m.subject_type, m.subject_id) for m in group.members.list()] == [("user", user_id)]
    # (Added) the membership shows as a direct effective group of the user.
    effective = groups.effective(principal_type="user", principal_id=user_id)
    assert [(g.group_id, g.group_name, g.source) for g in effective] == [(group.id, "engineers", "direct")]
    group.members.delete(subject_type="user", subject_id=user_id)
    assert list(group.members.list()) == []
    assert groups.effective(principal_type="user", principal_id=user_id) == []
    renamed = group.update(name="engineering", description="Updated")
    assert (renamed.id, renamed.name, renamed.description) == (group.id, "engineering", "Updated")
    assert (group.name, group.description) == ("engineers", "Engineering team")  # a new object
    assert groups.get(group.id).name == "engineering"
    group.delete()
    with pytest.raises(NotFoundError):
        groups.get(group.id)

    # Effective groups for a principal
    for g in groups.effective(principal_type="user", principal_id=user_id):
        print(g.group_name, g.source)
    assert groups.effective(principal_type="user", principal_id=user_id) == []


def test_groups_nested_membership_is_effective(org: Organization, user_id: str) -> None:
    parent = org.groups.create("everyone")
    child = org.groups.create("data-team")
    parent.members.create(subject_type="group", subject_id=child.id)
    child.members.create(subject_type="user", subject_id=user_id)
    effective = {
        g.group_name: (g.source, g.source_name)
        for g in org.groups.effective(principal_type="user", principal_id=user_id)
    }
    assert effective == {"data-team": ("direct", ""), "everyone": ("group", "data-team")}


def test_policies(org: Organization, user_id: str) -> None:
    engineers = org.groups.create("engineers")
    engineers.members.create(subject_type="user", subject_id=user_id)
    policies = org.policies

    # Validate before creating
    result = policies.validate("GetObject()")
    print(result.valid, result.errors)
    assert (result.valid, result.errors) == (True, [])
    # (Added) an unknown action on line 2 is reported at its first character.
    bad = policies.validate("GetObject()\n  GetObjekt()\n")
    assert bad.valid is False
    assert [(e.line, e.column) for e in bad.errors] == [(2, 3)], bad.errors
    assert "GetObjekt" in bad.errors[0].message

    policy = policies.create(
        name="read-only",
        policy_text="ListRepositories()\nGetRepository()\nGetObject()\n",
        description="Read-only access",
    )
    assert (policy.name, policy.description) == ("read-only", "Read-only access")
    assert policy.policy_text == "ListRepositories()\nGetRepository()\nGetObject()\n"
    assert policy.id in [p.id for p in policies.list()]

    # Generate from natural language
    text = policies.generate("Allow read-only access to all repositories")
    assert isinstance(text, str)
    assert "GetObject" in text, text
    assert policies.validate(text).valid, text

    # Attach / detach
    policy.attach(principal_type="group", principal_id=engineers.id)
    attached = [(a.policy_id, a.principal_type, a.principal_id) for a in policies.get(policy.id).attachments]
    assert attached == [(policy.id, "group", engineers.id)]
    assert [a.policy_name for a in org.groups.get(engineers.id).attachments] == ["read-only"]
    assert (policy.id, "group", engineers.id) in [
        (a.policy_id, a.principal_type, a.principal_id) for a in policies.attachments()
    ]
    granted = policies.effective(principal_type="user", principal_id=user_id)
    assert [(ep.policy_name, ep.source, ep.source_name) for ep in granted] == [
        ("read-only", "group", "engineers")
    ]
    policy.detach(principal_type="group", principal_id=engineers.id)
    assert policies.get(policy.id).attachments == []
    assert org.groups.get(engineers.id).attachments == []

    # Effective policies for a principal
    for ep in policies.effective(principal_type="user", principal_id=user_id):
        print(ep.policy_name, ep.source)
    assert policies.effective(principal_type="user", principal_id=user_id) == []

    # (Added) a direct attachment reports its source as "direct".
    policy.attach(principal_type="user", principal_id=user_id)
    direct = policies.effective(principal_type="user", principal_id=user_id)
    assert [(ep.policy_id, ep.source) for ep in direct] == [(policy.id, "direct")]


def test_roles_and_agents(org: Organization) -> None:
    # Roles
    role = org.roles.create("ci-deployer", description="CI/CD pipeline")
    assert (role.name, role.description) == ("ci-deployer", "CI/CD pipeline")
    for role in org.roles.list():
        print(role.name)
    assert [r.name for r in org.roles.list()] == ["ci-deployer"]

    # Agents
    agent = org.agents.create(
        "data-pipeline",
        description="Nightly pipeline",
        metadata={"env": "prod"},
    )
    assert (agent.name, agent.description, agent.metadata) == (
        "data-pipeline",
        "Nightly pipeline",
        {"env": "prod"},
    )
    staged = agent.update(metadata={"env": "staging"})
    assert staged.metadata == {"env": "staging"}
    agent.update(inline_policy="ListRepositories()\nGetObject()\n")

    fetched = org.agents.get("data-pipeline")
    assert fetched.metadata == {"env": "staging"}
    assert fetched.inline_policy == "ListRepositories()\nGetObject()\n"
    assert fetched.inline_policy_updated_at is not None
    # update() returns a new object with the change and leaves the one it was called on alone.
    assert agent.metadata == {"env": "prod"}
    renamed = agent.update(description="Nightly pipeline v2")
    assert renamed is not agent
    assert (renamed.description, agent.description) == ("Nightly pipeline v2", "Nightly pipeline")
    assert [a.name for a in org.agents.list()] == ["data-pipeline"]
    # An agent's grants come from its inline policy.
    inline = org.policies.effective(principal_type="agent", principal_id=agent.id)
    assert [ep.source for ep in inline] == ["inline"]


def test_agent_api_keys(server: LocalServer, org: Organization, repo: Repository) -> None:
    with repo.session() as session:
        session.objects.put("data/hello.txt", b"hello")
        commit_id = session.commit("seed")
    org.agents.create("data-pipeline").update(inline_policy="ListRepositories()\nGetObject()\n")

    agent = org.agents.get("data-pipeline")

    # Create a key (the full token is only shown once)
    created = agent.api_keys.create("pipeline-key")
    print(created.token)  # tak-...
    assert created.token.startswith("tak-")

    for key in agent.api_keys.list():
        print(key.name, key.token_hint)
    assert [(k.id, k.name, k.token_hint, k.token) for k in agent.api_keys.list()] == [
        (created.id, "pipeline-key", created.token[-4:], "")
    ]

    # (Added) the key authenticates and has exactly what the inline policy grants.
    with tilde.Client(api_key=created.token, endpoint_url=server.endpoint_url) as as_agent:
        listed = Organization(as_agent, name=org.name).repositories.list()
        assert [r.name for r in listed] == [repo.name]
        readable = Commit(as_agent, org.name, repo.name, id=commit_id).objects.get("data/hello.txt")
        assert readable.read() == b"hello"
        with pytest.raises(ForbiddenError) as denied:
            as_agent.repository(f"{org.name}/{repo.name}").session()
        assert "CreateSession" in denied.value.message
        with pytest.raises(ForbiddenError):
            list(as_agent.repository(f"{org.name}/{repo.name}").commits.list())

        key_id = created.id
        key = agent.api_keys.get(key_id)
        assert (key.name, key.revoked_at) == ("pipeline-key", None)
        key.revoke()
        assert agent.api_keys.get(key_id).revoked_at is not None
        with pytest.raises(AuthenticationError):
            list(Organization(as_agent, name=org.name).repositories.list())


def test_role_api_keys(server: LocalServer, org: Organization, repo: Repository) -> None:
    # "The same api_keys collection exists on Role instances (tokens prefixed trk-)."
    role = org.roles.create("ci-deployer", description="CI/CD pipeline")
    created = role.api_keys.create("deploy")
    assert created.token.startswith("trk-")
    assert [(k.name, k.token_hint) for k in role.api_keys.list()] == [("deploy", created.token[-4:])]
    with tilde.Client(api_key=created.token, endpoint_url=server.endpoint_url) as as_role:
        repositories = Organization(as_role, name=org.name).repositories
        # A role starts with no grants; a policy attached to it is what lets it in.
        with pytest.raises(ForbiddenError):
            list(repositories.list())
        policy = org.policies.create("read-only", "ListRepositories()\nGetRepository()\nGetObject()\n")
        policy.attach(principal_type="role", principal_id=role.id)
        assert [r.name for r in repositories.list()] == [repo.name]
        policy.detach(principal_type="role", principal_id=role.id)
        with pytest.raises(ForbiddenError):
            list(repositories.list())
        role.api_keys.get(created.id).revoke()
        with pytest.raises(AuthenticationError):
            list(repositories.list())


def test_secrets(org: Organization, repo: Repository) -> None:
    org.agents.create("data-pipeline")

    # Repository-scoped
    repo.secrets.create("API_KEY", "sk-abc123...")
    secret = repo.secrets.get("API_KEY")
    print(secret.value)
    assert secret.value == "sk-abc123..."
    assert [s.name for s in repo.secrets.list()] == ["API_KEY"]
    repo.secrets.delete("API_KEY")
    assert list(repo.secrets.list()) == []
    with pytest.raises(NotFoundError):
        repo.secrets.get("API_KEY")

    # Agent-scoped (override repo secrets with the same key)
    agent = org.agents.get("data-pipeline")
    agent.secrets.create("OPENAI_KEY", "sk-abc123...")
    assert [s.name for s in agent.secrets.list()] == ["OPENAI_KEY"]
    assert agent.secrets.get("OPENAI_KEY").value == "sk-abc123..."
    agent.secrets.create("OPENAI_KEY", "sk-rotated")  # create or overwrite
    assert agent.secrets.get("OPENAI_KEY").value == "sk-rotated"
    agent.secrets.delete("OPENAI_KEY")
    assert list(agent.secrets.list()) == []


def test_secret_values_are_not_cached(server: LocalServer, repo: Repository) -> None:
    # The single-secret read is the only response carrying a value, and it must not be cached.
    repo.secrets.create("TOKEN", "s3cr3t-value")
    org, name = repo.org, repo.name
    url = f"{server.endpoint_url}/api/v1/organizations/{org}/repositories/{name}/secrets"
    headers = {"Authorization": f"Bearer {server.api_key}"}
    one = httpx.get(f"{url}/TOKEN", headers=headers)
    assert one.status_code == 200, one.text
    assert one.json()["value"] == "s3cr3t-value"
    assert "no-store" in one.headers["cache-control"]
    listing = httpx.get(url, headers=headers)
    assert "s3cr3t-value" not in listing.text
