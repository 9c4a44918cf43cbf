"""Evaluating compiled policies: globs, path prefixes, deny beats allow, sets and intersections."""

from __future__ import annotations

import pytest

from tilde.server.iam import ACTIONS, ALLOW_ALL, PolicySet, Resource, parse_policy

R = Resource


def decide(text: str, action: str, resource: Resource) -> str | None:
    return parse_policy(text).decide(action, resource)


def test_statement_without_arguments_applies_to_every_resource() -> None:
    assert decide("GetObject()", "GetObject", R("any", "x/y")) == "allow"
    assert decide("GetObject()", "GetObject", R()) == "allow"
    assert decide("GetObject()", "PutObject", R("any", "x/y")) is None


@pytest.mark.parametrize(
    ("glob", "name", "expected"),
    [
        ("ml-data", "ml-data", "allow"),
        ("ml-data", "ml-data2", None),
        ("ml-*", "ml-data", "allow"),
        ("ml-*", "ml-", "allow"),
        ("ml-*", "xml-data", None),
        ("*-prod", "api-prod", "allow"),
        ("data-?", "data-1", "allow"),
        ("data-?", "data-10", None),
        ("data-[ab]", "data-b", "allow"),
        ("ML-*", "ml-data", None),  # case-sensitive
    ],
)
def test_repository_globs(glob: str, name: str, expected: str | None) -> None:
    assert decide(f'GetRepository(repository="{glob}")', "GetRepository", R(repository=name)) == expected


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("data/", "data/a.csv", "allow"),
        ("data/", "data/", "allow"),
        ("data/", "data", None),
        ("data/", "database/x", None),
        ("data", "database/x", "allow"),  # a prefix, not a folder: write the slash to mean the folder
        ("data/", "other/data/a", None),
    ],
)
def test_path_is_a_prefix(prefix: str, path: str, expected: str | None) -> None:
    assert decide(f'GetObject(path="{prefix}")', "GetObject", R("r", path)) == expected


def test_listing_prefix_is_the_resource_path() -> None:
    policy = parse_policy('ListObjects(path="data/")')
    assert policy.decide("ListObjects", R("r", "data/")) == "allow"
    assert policy.decide("ListObjects", R("r", "data/sub/")) == "allow"
    assert policy.decide("ListObjects", R("r", "")) is None  # the whole repository is not under data/


def test_absent_resource_never_matches_a_restriction() -> None:
    assert decide('GetObject(repository="*")', "GetObject", R()) is None
    assert decide('GetObject(path="a")', "GetObject", R("r")) is None
    assert decide('RunAs(agent="*")', "RunAs", R(role="ci")) is None
    assert decide('RunAs(role="*")', "RunAs", R(role="ci")) == "allow"
    assert decide('ListSecrets(agent="bot")', "ListSecrets", R(repository="r")) is None


def test_all_arguments_must_match() -> None:
    policy = parse_policy('GetObject(repository="r", path="a/")')
    assert policy.decide("GetObject", R("r", "a/x")) == "allow"
    assert policy.decide("GetObject", R("s", "a/x")) is None
    assert policy.decide("GetObject", R("r", "b/x")) is None


def test_glob_pattern_applies_only_to_actions_taking_its_arguments() -> None:
    policy = parse_policy('*(repository="r")')
    assert policy.decide("GetObject", R("r", "x")) == "allow"
    assert policy.decide("CreateSession", R("r")) == "allow"
    assert policy.decide("ListRepositories", R("r")) is None  # takes no repository argument
    assert policy.decide("CreateOrganization", R()) is None
    assert policy.decide("RunAs", R(agent="r")) is None


def test_deny_beats_allow_in_any_order() -> None:
    for text in ('*()\ndeny DeleteObject(path="keep/")', 'deny DeleteObject(path="keep/")\n*()'):
        policy = parse_policy(text)
        assert policy.decide("DeleteObject", R("r", "keep/a")) == "deny"
        assert policy.decide("DeleteObject", R("r", "tmp/a")) == "allow"
        assert policy.decide("GetObject", R("r", "keep/a")) == "allow"


def test_deny_alone_says_deny_and_nothing_else() -> None:
    policy = parse_policy("deny Delete*()")
    assert policy.decide("DeleteObject", R("r", "a")) == "deny"
    assert policy.decide("GetObject", R("r", "a")) is None


def test_allow_all() -> None:
    for name in ACTIONS:
        assert ALLOW_ALL.decide(name, R()) == "allow"
    assert ALLOW_ALL.decide("NoSuchAction", R()) is None


def test_policy_set_combines_policies() -> None:
    reader = parse_policy('GetObject(repository="a")')
    writer = parse_policy('PutObject(repository="b")\ndeny GetObject(path="secret/")')
    policies = PolicySet([reader, writer])
    assert policies.allows("GetObject", R("a", "x"))
    assert not policies.allows("GetObject", R("a", "secret/x"))  # a deny in another policy still wins
    assert policies.decide("GetObject", R("a", "secret/x")) == "deny"
    assert policies.allows("PutObject", R("b", "x"))
    assert not policies.allows("PutObject", R("a", "x"))
    assert policies.decide("PutObject", R("a", "x")) is None


def test_empty_policy_set_allows_nothing() -> None:
    nothing = PolicySet()
    for name in ACTIONS:
        assert nothing.decide(name, R("r", "p", "a", "o")) is None
        assert not nothing.allows(name, R("r", "p", "a", "o"))


def test_intersection_allows_only_what_both_allow() -> None:
    agent = PolicySet([parse_policy('GetObject()\nPutObject(repository="r")')])
    creator = PolicySet([parse_policy('GetObject(repository="r")\nPutObject()\nDeleteObject()')])
    capped = agent.intersect(creator)
    assert capped.allows("GetObject", R("r", "x"))
    assert not capped.allows("GetObject", R("s", "x"))  # the creator may not
    assert capped.decide("GetObject", R("s", "x")) is None
    assert capped.allows("PutObject", R("r", "x"))
    assert not capped.allows("PutObject", R("s", "x"))  # the agent may not
    assert not capped.allows("DeleteObject", R("r", "x"))  # only the creator may
    # Operands are unchanged.
    assert agent.allows("GetObject", R("s", "x"))
    assert creator.allows("DeleteObject", R("r", "x"))


def test_intersection_reports_a_deny_from_either_side() -> None:
    agent = PolicySet([parse_policy("*()")])
    creator = PolicySet([parse_policy('*()\ndeny DeleteRepository(repository="prod")')])
    for capped in (agent.intersect(creator), creator.intersect(agent)):
        assert capped.decide("DeleteRepository", R("prod")) == "deny"
        assert capped.decide("DeleteRepository", R("dev")) == "allow"
    # A later operand's deny wins even when an earlier one said nothing.
    silent = PolicySet([parse_policy("GetObject()")])
    assert silent.intersect(creator).decide("DeleteRepository", R("prod")) == "deny"


def test_intersection_with_nothing_allows_nothing() -> None:
    everything = PolicySet([ALLOW_ALL])
    assert not everything.intersect(PolicySet()).allows("GetObject", R("r", "x"))
    three = everything.intersect(everything).intersect(PolicySet([parse_policy('GetObject(repository="r")')]))
    assert three.allows("GetObject", R("r", "x"))
    assert not three.allows("GetObject", R("s", "x"))


def test_set_indexes_by_action() -> None:
    # Statements about other actions are never consulted: a decision for an action nobody mentions is None.
    policies = PolicySet([parse_policy("\n".join(f'GetObject(repository="r{i}")' for i in range(500)))])
    assert policies.allows("GetObject", R("r499", "x"))
    assert policies.decide("PutObject", R("r499", "x")) is None
