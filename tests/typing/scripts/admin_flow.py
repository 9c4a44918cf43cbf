"""An administrator's flow: members, groups, policies, roles, agents and keys."""

from __future__ import annotations

import tilde
from tilde.models import Member, Organization


def admin_flow() -> None:
    org: Organization[tilde.Repository] = tilde.organizations.get("acme")
    member: Member = org.members.create("alice")
    org.members.delete(member.username)
    org.members.delete(member.user_id)

    group = org.groups.create("engineers", description="People who build")
    group.members.create(subject_type="user", subject_id=member.user_id)
    policy = org.policies.create("read-only", 'ListRepositories()\nGetObject(repository="data")\n')
    policy.attach(principal_type="group", principal_id=group.id)
    result = org.policies.validate("GetObject()\n")
    print(result.valid, [error.message for error in result.errors])

    role = org.roles.create("ci")
    key = role.api_keys.create("ci-key")
    print(key.token)
    agent = org.agents.create("pipeline", metadata={"team": "data"})
    agent.secrets.create("TOKEN", "t")

    for repo in org.repositories.list():
        print(repo.name, repo.secrets, repo.connectors)
        repo.execute("true")
