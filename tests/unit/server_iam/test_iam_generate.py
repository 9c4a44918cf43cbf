"""The built-in policy generator: documented phrases to statements, and `generate_policy`'s checks."""

from __future__ import annotations

import random

import pytest

from tilde.server.iam import (
    BUILTIN_POLICIES,
    PolicyGenerationError,
    PolicySet,
    Resource,
    generate_policy,
    make_server_plugin_manager,
    parse_policy,
    validate_policy,
)
from tilde.server.iam.generate import EXAMPLE_PROMPTS, MAX_PROMPT_CHARS, builtin_generate


def statements(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


READ_ONLY = statements(BUILTIN_POLICIES["ReadOnly"].policy_text)

# (prompt, statements that must appear, statements that must not appear)
PHRASES: list[tuple[str, list[str], list[str]]] = [
    ("Allow read-only access to all repositories", READ_ONLY, ["PutObject()", "*()"]),
    ("view objects", ["GetObject()", "ListObjects()"], ["PutObject()"]),
    ("Browse and download", ["GetObject()"], []),
    ("upload files", ["PutObject()", "CreateSession()", "CommitSession()", "GetObject()"], ["*()"]),
    ("modify data", ["PutObject()", "DeleteObject()", "RevertCommit()"], []),
    ("edit", ["PutObject()"], []),
    ("delete objects", ["DeleteObject()", "CreateSession()"], ["PutObject()"]),
    (
        "run sandboxes",
        ["CreateSandbox()", "ExecSandbox()", "FinishSandbox()", "CancelSandbox()"],
        ["PutObject()"],
    ),
    ("execute compute jobs", ["CreateSandbox()", "GetSandbox()"], []),
    ("approve sessions", ["ApproveSession()"], []),
    ("import data", ["CreateImport()", "GetImport()"], []),
    ("admin", ["*()"], []),
    ("full access", ["*()"], []),
    ("everything", ["*()"], []),
    ("read everything", READ_ONLY, ["*()"]),  # "everything" is the object of a verb here, not a grant of all
    ("manage members", ["ListMembers()", "AddMember()", "RemoveMember()"], ["ListGroups()"]),
    (
        "manage groups, policies and agents",
        ["CreateGroup()", "AddGroupMember()", "AttachPolicy()", "UpdateAgent()"],
        ["ListMembers()", "CreateRole()"],
    ),
    ("manage roles and API keys", ["CreateRole()", "DeleteRole()", "CreateAPIKey()", "RevokeAPIKey()"], []),
    (
        "manage secrets & connectors",
        ["PutSecret()", "GetSecret()", "AttachConnector()", "CreateConnector()"],
        [],
    ),
    ("manage triggers", ["CreateSandboxTrigger()", "DeleteSandboxTrigger()"], []),
    ("manage repositories", ["CreateRepository()", "DeleteRepository()", "UpdateRepository()"], []),
    (
        "read access to repository ml-data",
        ['GetObject(repository="ml-data")', "ListRepositories()", 'GetRepository(repository="ml-data")'],
        ["GetObject()"],
    ),
    ("read repo ml-data", ['GetObject(repository="ml-data")'], []),
    ("read the repository named data", ['GetObject(repository="data")'], []),
    ('read repository "quoted-name"', ['GetObject(repository="quoted-name")'], []),
    ("read repositories matching ml-*", ['GetObject(repository="ml-*")'], []),
    (
        "read repository a1 and repository b2",
        ['GetObject(repository="a1")', 'GetObject(repository="b2")'],
        ["GetObject()"],
    ),
    ("read objects under datasets/", ['GetObject(path="datasets/")', 'ListObjects(path="datasets/")'], []),
    ("read objects under datasets", ['GetObject(path="datasets/")'], []),  # "under X" means the folder X/
    ("read objects with prefix raw", ['GetObject(path="raw")'], []),  # a prefix is taken literally
    ("read in folder /logs", ['GetObject(path="logs/")'], []),
    (
        "upload under data/ in repository lake",
        ['PutObject(repository="lake", path="data/")', 'GetRepository(repository="lake")'],
        ['PutObject(repository="lake")'],
    ),
    (
        "write access to repository ml-data except delete",
        ['PutObject(repository="ml-data")', 'deny DeleteObject(repository="ml-data")'],
        ['DeleteObject(repository="ml-data")'],
    ),
    ("read and write, but not delete", ["PutObject()", "deny DeleteObject()"], ["DeleteObject()"]),
    ("deny delete", ["deny DeleteObject()"], ["DeleteObject()", "CreateSession()"]),
    ("full access to repository prod", ['*(repository="prod")', "ListRepositories()"], ["*()"]),
    ("everything except manage policies", ["*()", "deny AttachPolicy()", "deny CreatePolicy()"], []),
    ("run sandboxes as agent nightly-etl", ['RunAs(agent="nightly-etl")', "CreateSandbox()"], []),
    ("run as role ci", ['RunAs(role="ci")'], []),
    ("run as agents matching etl-*", ['RunAs(agent="etl-*")'], []),
    ("run sandboxes but never as agent root", ["CreateSandbox()", 'deny RunAs(agent="root")'], []),
    # A name is never read as a phrase: "delete-me" does not grant deletion.
    ("read repository delete-me", ['GetObject(repository="delete-me")'], ["DeleteObject()"]),
    ("READ-ONLY ACCESS", READ_ONLY, []),
]


@pytest.mark.parametrize(("prompt", "present", "absent"), PHRASES, ids=[p[0] for p in PHRASES])
def test_phrases(prompt: str, present: list[str], absent: list[str]) -> None:
    text = builtin_generate(prompt)
    assert text is not None
    assert validate_policy(text) == []
    lines = statements(text)
    for statement in present:
        assert statement in lines, (statement, text)
    for statement in absent:
        assert statement not in lines, (statement, text)
    assert text.splitlines()[0] == f"# generated from: {' '.join(prompt.split())}"


@pytest.mark.parametrize("prompt", EXAMPLE_PROMPTS)
def test_documented_examples_generate_valid_text(prompt: str) -> None:
    text = builtin_generate(prompt)
    assert text is not None
    assert validate_policy(text) == []


def test_generation_is_deterministic() -> None:
    prompt = "write access to repositories matching ml-* under data/ except delete"
    assert builtin_generate(prompt) == builtin_generate(prompt)


def test_generated_policy_behaves_as_asked() -> None:
    text = builtin_generate("write access to repository ml-data under raw/ except delete")
    assert text is not None
    policies = PolicySet([parse_policy(text)])
    assert policies.allows("PutObject", Resource("ml-data", "raw/a.csv"))
    assert not policies.allows("PutObject", Resource("ml-data", "clean/a.csv"))
    assert not policies.allows("PutObject", Resource("other", "raw/a.csv"))
    assert policies.decide("DeleteObject", Resource("ml-data", "raw/a.csv")) == "deny"
    assert policies.allows("CommitSession", Resource("ml-data"))
    assert policies.allows("ListRepositories", Resource())


@pytest.mark.parametrize("prompt", ["hello world", "please", "repository ml-data", "under data/", "12345"])
def test_unrecognised_prompts(prompt: str) -> None:
    assert builtin_generate(prompt) is None


def test_long_prompt_comment_is_one_truncated_line() -> None:
    prompt = "read\n" + "and read again " * 50
    text = builtin_generate(prompt)
    assert text is not None
    header = text.splitlines()[0]
    assert header.endswith("...")
    assert len(header) == len("# generated from: ") + 120


def test_generate_policy_through_the_plugin_manager() -> None:
    manager = make_server_plugin_manager(load_entrypoints=False)
    text = generate_policy("Allow read-only access to all repositories", manager)
    assert statements(text) == READ_ONLY


def test_generate_policy_rejects_unrecognised_prompt_with_examples() -> None:
    manager = make_server_plugin_manager(load_entrypoints=False)
    with pytest.raises(PolicyGenerationError) as caught:
        generate_policy("make me a sandwich", manager)
    assert caught.value.status == 400
    assert "read-only access to all repositories" in caught.value.message


@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_generate_policy_rejects_blank_prompt(prompt: str) -> None:
    with pytest.raises(PolicyGenerationError, match="empty") as caught:
        generate_policy(prompt, make_server_plugin_manager(load_entrypoints=False))
    assert caught.value.status == 400


def test_generate_policy_prompt_limit() -> None:
    manager = make_server_plugin_manager(load_entrypoints=False)
    at_limit = ("read " * MAX_PROMPT_CHARS)[:MAX_PROMPT_CHARS]
    assert generate_policy(at_limit, manager)
    with pytest.raises(PolicyGenerationError, match="limit is 4000") as caught:
        generate_policy(at_limit + "x", manager)
    assert caught.value.status == 400
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("prompt", "path"),
    [
        ('read under "data/*.csv"', 'path="data/"'),
        ("read under data/*", 'path="data/"'),
        ('read under "/abs/dir/"', 'path="abs/dir/"'),
    ],
)
def test_paths_become_literal_prefixes(prompt: str, path: str) -> None:
    text = builtin_generate(prompt)
    assert text is not None
    assert f"GetObject({path})" in statements(text)


def test_names_with_quotes_backslashes_or_control_characters_stay_valid() -> None:
    prompts = ['read repository "a\\b"', 'read repository "x\ty"', 'read under "a\nb"', "read repo 'it\"s'"]
    for prompt in prompts:
        text = builtin_generate(prompt)
        assert text is not None
        assert validate_policy(text) == [], (prompt, text)


WORDS = [
    "read", "write", "delete", "run", "admin", "everything", "manage", "members", "groups", "and", ",",
    "except", "not", "repository", "repo", "repositories", "matching", "ml-*", '"q x"', "'a'", "under",
    "prefix", "data/", "/", "*", "as", "agent", "role", "bot", "named", "in", "folder", "the", "\t", "\n",
    '"', "\\", "é", "approve", "import", "keys", "api", "secrets", "policies", "full", "access", "no", "deny",
    "x" * 30,
]  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_generator_output_always_validates(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 25)))
        text = builtin_generate(prompt)
        if text is not None:
            assert validate_policy(text) == [], (prompt, text)
