"""Run by test_published_admin.py with the published tilde-sdk, in its own virtual environment.

The admin sections of the published README, code kept as written (``my-org``, ``alice``, ``user-uuid``,
``group-uuid``, ``key_id``, bucket and credentials replaced by real values), with checks between the lines.
It imports nothing of this project: only the published client, httpx (its dependency, for the human who
approves an agent's commit) and the standard library.

Arguments: endpoint_url admin_api_key s3_json user_api_key, where s3_json holds ``endpoint_url, access_key_id,
secret_access_key, region, bucket`` and ``objects`` (the bucket's keys and text contents). The admin key and
endpoint also come in ``TILDE_API_KEY`` / ``TILDE_ENDPOINT_URL``, as the README's module-level calls expect.
Prints ``OK <section>`` for each section that passed and ``FAIL <section>: <error>`` for each that did not,
and exits non-zero if any failed. ``user_api_key`` is a plain human user's key (``tilde-server user
create``), with which the "Organizations" section runs a second time.
"""

import json
import sys
import threading
import time
import traceback
import uuid
import warnings

import httpx

import tilde
from tilde.exceptions import AuthenticationError, ForbiddenError, NotFoundError
from tilde.models import Commit, Organization

ENDPOINT, ADMIN_KEY, S3_JSON, USER_KEY = sys.argv[1:5]
S3 = json.loads(S3_JSON)
SECTIONS = []


def section(name):
    def register(function):
        SECTIONS.append((name, function))
        return function

    return register


def fresh(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_org():
    return tilde.organizations.create(fresh("org"), display_name="Test org")


def new_member(org):
    return org.members.create(fresh("alice")).user_id


def human(path=""):
    """The admin over raw HTTP, on ``/api/v1`` + ``path``."""
    return httpx.Client(
        base_url=f"{ENDPOINT}/api/v1{path}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60
    )


def expect(error_class, call):
    try:
        call()
    except error_class as error:
        return error
    raise AssertionError(f"expected {error_class.__name__}")


def wait_for(job):
    while job.status not in ("completed", "failed"):
        time.sleep(2)
        job.refresh()
    return job


def committed(repo):
    head = next(iter(repo.commits.list()))
    found = {}
    for entry in head.objects.list():
        with head.objects.get(entry.path) as f:
            found[entry.path] = f.read()
    return found


@section("organizations")
def organizations():
    my_org = fresh("my-org")
    # Create, list, get, delete at the module level
    org = tilde.organizations.create(my_org, display_name="My Org")
    assert (org.name, org.display_name) == (my_org, "My Org")
    for o in tilde.organizations.list():
        print(o.name, o.display_name, file=sys.stderr)
    assert my_org in [o.name for o in tilde.organizations.list()]
    org = tilde.organizations.get(my_org)
    assert org.display_name == "My Org"
    tilde.organizations.delete(my_org)
    expect(NotFoundError, lambda: tilde.organizations.get(my_org))

    org = tilde.organizations.get(new_org().name)
    for collection in (
        org.repositories,
        org.members,
        org.agents,
        org.roles,
        org.groups,
        org.policies,
        org.connectors,
    ):
        assert callable(collection.list), collection
    assert list(org.agents.list()) == []
    assert list(org.roles.list()) == []
    assert list(org.groups.list()) == []
    assert list(org.connectors.list()) == []


@section("organizations as a user")
def organizations_as_a_user():
    tilde.configure(api_key=USER_KEY, endpoint_url=ENDPOINT)
    try:
        my_org = fresh("my-org")
        org = tilde.organizations.create(my_org, display_name="My Org")
        assert [o.name for o in tilde.organizations.list()] == [my_org]
        org = tilde.organizations.get(my_org)
        org.repositories.create("data")
        assert [r.name for r in org.repositories.list()] == ["data"]
        tilde.organizations.delete(my_org)
        assert list(tilde.organizations.list()) == []
    finally:
        # Back to the environment's admin key for the other sections.
        tilde.configure(api_key=ADMIN_KEY, endpoint_url=ENDPOINT)


@section("members")
def members():
    org = new_org()
    alice = fresh("alice")
    for m in org.members.list():
        print(m.username, m.email, file=sys.stderr)

    org.members.create(alice)  # add by username
    assert alice in [m.username for m in org.members.list()]
    user_id = org.members.get(alice).user_id
    org.members.delete(user_id)  # remove by user_id
    assert alice not in [m.username for m in org.members.list()]


@section("groups")
def groups_section():
    org = new_org()
    user_id = new_member(org)
    groups = org.groups

    group = groups.create("engineers", description="Engineering team")
    group = groups.get(group.id)  # includes members + attachments
    assert (group.name, group.description, group.attachments) == ("engineers", "Engineering team", [])
    group.members.create(subject_type="user", subject_id=user_id)
    assert [(m.subject_type, m.subject_id) for m in group.members.list()] == [("user", user_id)]
    effective = groups.effective(principal_type="user", principal_id=user_id)
    assert [(g.group_name, g.source) for g in effective] == [("engineers", "direct")], effective
    group.members.delete(subject_type="user", subject_id=user_id)
    assert list(group.members.list()) == []
    renamed = group.update(name="engineering", description="Updated")
    assert (renamed.name, renamed.description, group.name) == ("engineering", "Updated", "engineers")
    group.delete()
    expect(NotFoundError, lambda: groups.get(group.id))

    # Effective groups for a principal
    for g in groups.effective(principal_type="user", principal_id=user_id):
        print(g.group_name, g.source, file=sys.stderr)
    assert groups.effective(principal_type="user", principal_id=user_id) == []


@section("policies")
def policies_section():
    org = new_org()
    user_id = new_member(org)
    engineers = org.groups.create("engineers")
    engineers.members.create(subject_type="user", subject_id=user_id)
    policies = org.policies

    # Validate before creating
    result = policies.validate("GetObject()")
    print(result.valid, result.errors, file=sys.stderr)
    assert (result.valid, result.errors) == (True, [])
    bad = policies.validate("GetObject()\n  GetObjekt()\n")
    assert bad.valid is False
    assert [(e.line, e.column) for e in bad.errors] == [(2, 3)], bad.errors

    policy = policies.create(
        name="read-only",
        policy_text="ListRepositories()\nGetRepository()\nGetObject()\n",
        description="Read-only access",
    )
    assert policy.policy_text == "ListRepositories()\nGetRepository()\nGetObject()\n"

    # Generate from natural language
    text = policies.generate("Allow read-only access to all repositories")
    assert text.strip(), text
    assert policies.validate(text).valid, text

    # Attach / detach
    policy.attach(principal_type="group", principal_id=engineers.id)
    attached = [(a.principal_type, a.principal_id) for a in policies.get(policy.id).attachments]
    assert attached == [("group", engineers.id)], attached
    assert [a.policy_name for a in org.groups.get(engineers.id).attachments] == ["read-only"]
    granted = policies.effective(principal_type="user", principal_id=user_id)
    assert [(ep.policy_name, ep.source) for ep in granted] == [("read-only", "group")], granted
    policy.detach(principal_type="group", principal_id=engineers.id)
    assert policies.get(policy.id).attachments == []

    # Effective policies for a principal
    for ep in policies.effective(principal_type="user", principal_id=user_id):
        print(ep.policy_name, ep.source, file=sys.stderr)
    assert policies.effective(principal_type="user", principal_id=user_id) == []


@section("roles and agents")
def roles_and_agents():
    org = new_org()
    # Roles
    role = org.roles.create("ci-deployer", description="CI/CD pipeline")
    for role in org.roles.list():
        print(role.name, file=sys.stderr)
    assert [r.name for r in org.roles.list()] == ["ci-deployer"]

    # Agents
    agent = org.agents.create(
        "data-pipeline",
        description="Nightly pipeline",
        metadata={"env": "prod"},
    )
    staged = agent.update(metadata={"env": "staging"})
    assert (staged.metadata, agent.metadata) == ({"env": "staging"}, {"env": "prod"})
    agent.update(inline_policy="ListRepositories()\nGetObject()\n")
    fetched = org.agents.get("data-pipeline")
    assert fetched.metadata == {"env": "staging"}
    assert fetched.inline_policy == "ListRepositories()\nGetObject()\n"
    inline = org.policies.effective(principal_type="agent", principal_id=agent.id)
    assert [ep.source for ep in inline] == ["inline"], inline


@section("api keys")
def api_keys():
    org = new_org()
    repo = org.repositories.create("data")
    with repo.session() as session:
        session.objects.put("data/hello.txt", b"hello")
        commit_id = session.commit("seed")
    org.agents.create("data-pipeline").update(inline_policy="ListRepositories()\nGetObject()\n")

    agent = org.agents.get("data-pipeline")

    # Create a key (the full token is only shown once)
    created = agent.api_keys.create("pipeline-key")
    print(created.token, file=sys.stderr)  # tak-...
    assert created.token.startswith("tak-")

    for key in agent.api_keys.list():
        print(key.name, key.token_hint, file=sys.stderr)
    assert [(k.name, k.token_hint) for k in agent.api_keys.list()] == [("pipeline-key", created.token[-4:])]

    with tilde.Client(api_key=created.token, endpoint_url=ENDPOINT) as as_agent:
        repositories = Organization(as_agent, name=org.name).repositories
        assert [r.name for r in repositories.list()] == ["data"]
        with Commit(as_agent, org.name, "data", id=commit_id).objects.get("data/hello.txt") as f:
            assert f.read() == b"hello"
        denied = expect(ForbiddenError, lambda: as_agent.repository(f"{org.name}/data").session())
        assert "CreateSession" in denied.message, denied.message

        key_id = created.id
        key = agent.api_keys.get(key_id)
        key.revoke()
        assert agent.api_keys.get(key_id).revoked_at is not None
        expect(AuthenticationError, lambda: list(repositories.list()))

    # The same api_keys collection exists on Role instances (tokens prefixed trk-).
    role = org.roles.create("ci-deployer", description="CI/CD pipeline")
    role_key = role.api_keys.create("deploy")
    assert role_key.token.startswith("trk-")
    with tilde.Client(api_key=role_key.token, endpoint_url=ENDPOINT) as as_role:
        repositories = Organization(as_role, name=org.name).repositories
        expect(ForbiddenError, lambda: list(repositories.list()))
        policy = org.policies.create("read-only", "ListRepositories()\nGetRepository()\nGetObject()\n")
        policy.attach(principal_type="role", principal_id=role.id)
        assert [r.name for r in repositories.list()] == ["data"]
        role_key.revoke()
        expect(AuthenticationError, lambda: list(repositories.list()))


@section("secrets")
def secrets():
    org = new_org()
    repo = org.repositories.create("data")
    org.agents.create("data-pipeline")

    # Repository-scoped
    repo.secrets.create("API_KEY", "sk-abc123...")
    secret = repo.secrets.get("API_KEY")
    assert secret.value == "sk-abc123..."
    assert [s.name for s in repo.secrets.list()] == ["API_KEY"]
    repo.secrets.delete("API_KEY")
    assert list(repo.secrets.list()) == []
    expect(NotFoundError, lambda: repo.secrets.get("API_KEY"))

    # Agent-scoped (override repo secrets with the same key)
    agent = org.agents.get("data-pipeline")
    agent.secrets.create("OPENAI_KEY", "sk-abc123...")
    assert [s.name for s in agent.secrets.list()] == ["OPENAI_KEY"]
    assert agent.secrets.get("OPENAI_KEY").value == "sk-abc123..."


@section("connectors and imports")
def connectors_and_imports():
    org = new_org()
    repo = org.repositories.create("data")
    connectors = org.connectors

    # S3
    conn = connectors.create(
        name="production-s3",
        type="s3",
        source_uri=f"s3://{S3['bucket']}/datasets/",
        config={
            "access_key_id": S3["access_key_id"],
            "secret_access_key": S3["secret_access_key"],
            "region": S3["region"],
            "endpoint_url": S3["endpoint_url"],
        },
    )
    assert [c.id for c in connectors.list()] == [conn.id]

    # Attach to a repo
    repo.connectors.attach(conn.id)
    for c in repo.connectors.list():
        print(c.name, c.type, file=sys.stderr)
    assert [(c.name, c.type) for c in repo.connectors.list()] == [("production-s3", "s3")]

    job = repo.imports.create_from_connector(
        connector_id=conn.id,
        destination_path="imported/",
        source_prefix="datasets/",
        commit_message="Import production datasets",
    )

    while job.status not in ("completed", "failed"):
        time.sleep(2)
        job.refresh()
        print(job.status, job.objects_imported, file=sys.stderr)

    if job.status == "completed":
        print(f"Import done! Commit: {job.commit_id}", file=sys.stderr)

    assert job.status == "completed", job.error
    expected = {
        "imported/" + key[len("datasets/") :]: text.encode()
        for key, text in S3["objects"].items()
        if key.startswith("datasets/")
    }
    assert job.objects_imported == len(expected)
    assert [c.id for c in repo.commits.list()] == [job.commit_id]
    assert committed(repo) == expected


@section("cross-repository import")
def cross_repository_import():
    org = new_org()
    repo = org.repositories.create("data")
    other_org = new_org()
    source = other_org.repositories.create("source-data")
    with source.session() as session:
        session.objects.put("datasets/train/a.csv", b"a\n1\n")
        session.objects.put("datasets/test/b.csv", b"b\n2\n")
        session.commit("source data")

    job = repo.imports.create_from_repository(
        repo_path=f"{other_org.name}/source-data",
        destination_path="external/",
        source_prefix="datasets/train/",
        commit_message="Import training data",
    )
    wait_for(job)
    assert job.status == "completed", job.error
    assert [c.id for c in repo.commits.list()] == [job.commit_id]
    assert committed(repo) == {"external/a.csv": b"a\n1\n"}


def approve_when_parked(http, session_id, approvals):
    deadline = time.monotonic() + 60
    while http.head(f"sessions/{session_id}/approve").status_code != 200:
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    approved = http.post(f"sessions/{session_id}/approve", json={})
    approvals.append(approved.json().get("commit_id"))


@section("agent approval workflow")
def approval():
    org = new_org()
    with human(f"/organizations/{org.name}") as http:
        created = http.post(
            "/repositories",
            json={"name": "guarded", "visibility": "private", "agent_commits_require_approval": True},
        )
        assert created.status_code == 201, created.text
    agent = org.agents.create("data-pipeline")
    agent.update(
        inline_policy="GetRepository()\nCreateSession()\nPutObject()\nGetObject()\nListObjects()\n"
        "CommitSession()\nRollbackSession()\n"
    )
    token = agent.api_keys.create("pipeline-key").token
    with (
        tilde.Client(api_key=token, endpoint_url=ENDPOINT) as as_agent,
        human(f"/organizations/{org.name}/repositories/guarded/") as http,
    ):
        repo = as_agent.repository(f"{org.name}/guarded")
        admin_repo = tilde.repository(f"{org.name}/guarded")

        approvals = []
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            with repo.session() as session:
                approver = threading.Thread(
                    target=approve_when_parked, args=(http, session.session_id, approvals), daemon=True
                )
                approver.start()
                session.objects.put("data/results.csv", b"col1,col2\na,b\n")
                assert session.commit("add results") == ""  # blocks until approved
            approver.join(timeout=60)
        assert any("Approval required" in str(w.message) for w in warned), warned
        assert [(c.id, c.message) for c in admin_repo.commits.list()] == [(approvals[0], "add results")]

        # Non-blocking
        session = repo.session()
        session.objects.put("data/results.csv", b"col1,col2\nc,d\n")
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            result = session.commit("add results", block_for_approval=False)
        assert result is None  # session stays open for review
        assert http.head(f"sessions/{session.session_id}/approve").status_code == 200
        assert http.delete(f"sessions/{session.session_id}").status_code == 204

        # Structured result (no blocking, no warnings)
        session = repo.session()
        session.objects.put("data/results.csv", b"col1,col2\ne,f\n")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = session.commit_result("add results")
        if result.status == "committed":
            print(result.commit_id, file=sys.stderr)
        elif result.status == "approval_required":
            print(result.web_url, file=sys.stderr)
        assert result.status == "approval_required"
        assert session.session_id in result.web_url
        approvals.clear()
        approve_when_parked(http, session.session_id, approvals)
        assert next(iter(admin_repo.commits.list())).id == approvals[0]


def main():
    failed = False
    for name, function in SECTIONS:
        try:
            function()
        except Exception as error:
            failed = True
            traceback.print_exc()
            summary = " ".join(str(error).split())[:300]
            print(f"FAIL {name}: {type(error).__name__}: {summary}", flush=True)
        else:
            print(f"OK {name}", flush=True)
    sys.exit(1 if failed else 0)


main()
