"""The policy grammar: valid texts, and every kind of error at its exact line and column."""

from __future__ import annotations

import pytest

from tilde.server.iam import PolicyError, PolicySyntaxError, parse_policy, validate_policy
from tilde.server.iam.policy import MAX_POLICY_CHARS, MAX_STATEMENTS

VALID = [
    "",
    "\n\n",
    "# only a comment",
    "GetObject()",
    "GetObject( )",
    "  GetObject()  # trailing comment",
    "allow GetObject()",
    "deny\tDeleteObject()",
    "*()",
    "Get*()",
    '*Object(repository="ml-*")',
    'GetObject(repository="ml-data", path="datasets/")',
    'GetObject( path = "a/" ,repository="r" )',
    'RunAs(agent="bot-*")',
    'RunAs(role="ci")',
    'ListSecrets(repository="r")',
    'ListSecrets(agent="a")',
    'GetObject(path="quote\\"d and back\\\\slash/")',
    'GetObject(path="unicode é/")',
    "ListRepositories()\r\nGetRepository()\r\n",
    "ListRepositories()\nGetRepository()\nGetObject()\n",  # the published README's example
    'Get*(path="x/")',  # only GetObject takes path: the statement applies to it alone
]


@pytest.mark.parametrize("text", VALID)
def test_valid_texts(text: str) -> None:
    assert validate_policy(text) == []
    parse_policy(text)


# (text, line, column, a fragment of the message)
ERRORS = [
    # unknown action: at its first character, with a suggestion
    ("GetObjet()", 1, 1, "unknown action 'GetObjet'; did you mean 'GetObject'?"),
    ("getobject()", 1, 1, "did you mean 'GetObject'?"),
    ("  Frobnicate()", 1, 3, "unknown action 'Frobnicate'"),
    ("deny GetObjet()", 1, 6, "did you mean 'GetObject'?"),
    # a glob matching nothing
    ("Frob*()", 1, 1, "the pattern 'Frob*' matches no action"),
    # unknown / duplicate / unsupported arguments: at the argument's name
    ('GetObject(repo="x")', 1, 11, "unknown argument 'repo'; did you mean 'repository'?"),
    ('GetObject(pth="x")', 1, 11, "did you mean 'path'?"),
    ('GetObject(path="a/", path="b/")', 1, 22, "duplicate argument 'path'"),
    ('ListRepositories(repository="x")', 1, 18, "ListRepositories does not take 'repository'"),
    ('GetRepository(path="x")', 1, 15, "GetRepository does not take 'path' (GetRepository takes repository)"),
    ('*Repository(path="x")', 1, 13, "none of the actions matching '*Repository' takes 'path'"),
    # strings
    ('GetObject(path="abc)', 1, 16, "unterminated string"),
    ('GetObject(path="")', 1, 16, "empty value for 'path'"),
    ("GetObject(path='x')", 1, 16, "strings use double quotes"),
    ('GetObject(path="a\\nb")', 1, 18, "unsupported escape"),
    ('GetObject(path="a\tb")', 1, 18, "control character"),
    ('GetObject(path="/data")', 1, 16, "never start with '/'"),
    ('GetObject(path="data/*")', 1, 16, "literal prefix, not a glob"),
    # missing punctuation: where it was expected
    ("GetObject", 1, 10, "expected '(' after 'GetObject'"),
    ("GetObject   ", 1, 10, "expected '(' after 'GetObject'"),
    ("GetObject)", 1, 10, "expected '(' after 'GetObject', found ')'"),
    ("GetObject(", 1, 11, "expected an argument name or ')'"),
    ('GetObject(path="x"', 1, 19, "expected ',' or ')'"),
    ('GetObject(path="x" repository="y")', 1, 20, "expected ',' or ')', found 'r'"),
    ('GetObject(path "x")', 1, 16, "expected '=' after 'path'"),
    ("GetObject(path=)", 1, 16, "expected a double-quoted string after 'path='"),
    ('GetObject(path="a/",)', 1, 21, "expected an argument name, found ')'"),
    ("GetObject(# comment", 1, 11, "expected an argument name or ')', found '#'"),
    ("@GetObject()", 1, 1, "expected an action name, found '@'"),
    # trailing text: at its start
    ("GetObject() ListRepositories()", 1, 13, "unexpected text after the statement"),
    ("GetObject();", 1, 12, "unexpected text after the statement"),
    # effects
    ("deny", 1, 5, "expected an action name after 'deny'"),
    ("allow ()", 1, 7, "expected an action name after 'allow'"),
    ("Allow GetObject()", 1, 1, "write the effect in lower case: 'allow'"),
    ("DENY GetObject()", 1, 1, "write the effect in lower case: 'deny'"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), ERRORS)
def test_error_positions(text: str, line: int, column: int, message: str) -> None:
    errors = validate_policy(text)
    assert len(errors) == 1, errors
    assert (errors[0].line, errors[0].column) == (line, column), errors[0]
    assert message in errors[0].message


def test_errors_are_collected_for_every_line() -> None:
    text = "\n".join(
        [
            "# a policy with three mistakes",
            "GetObject()",
            "GetObjet()",
            "",
            '   GetObject(path="x" path="y")',
            "ListRepositories()",
            "Allow GetObject()",
        ]
    )
    errors = validate_policy(text)
    assert [(e.line, e.column) for e in errors] == [(3, 1), (5, 23), (7, 1)]


def test_parse_raises_with_every_error() -> None:
    with pytest.raises(PolicySyntaxError) as caught:
        parse_policy("GetObjet()\nNope()")
    assert [e.line for e in caught.value.errors] == [1, 2]
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith("line 1, column 1: unknown action 'GetObjet'")
    assert "(and 1 more)" in str(caught.value)


def test_error_is_a_plain_value() -> None:
    error = PolicyError(2, 5, "boom")
    assert str(error) == "line 2, column 5: boom"
    assert error == PolicyError(2, 5, "boom")


def test_too_long_text_is_an_error_not_an_exception() -> None:
    text = "GetObject()\n" * (MAX_POLICY_CHARS // 12 + 1)
    assert len(text) > MAX_POLICY_CHARS
    errors = validate_policy(text)
    assert [(e.line, e.column) for e in errors] == [(1, 1)]
    assert "limit is 100000" in errors[0].message


def test_longest_allowed_text_validates() -> None:
    text = ("# " + "x" * (MAX_POLICY_CHARS - 20) + "\n" + "GetObject()\n").ljust(MAX_POLICY_CHARS)
    assert len(text) == MAX_POLICY_CHARS
    assert validate_policy(text) == []


def test_too_many_statements() -> None:
    ok = "# header\n" + "GetObject()\n" * MAX_STATEMENTS
    assert validate_policy(ok) == []
    errors = validate_policy(ok + "  ListRepositories()\n")
    assert [(e.line, e.column) for e in errors] == [(MAX_STATEMENTS + 2, 3)]
    assert "limit is 1000" in errors[0].message


def test_statements_keep_their_source() -> None:
    policy = parse_policy('# c\ndeny GetObject(repository="r", path="a/")\n*()')
    first, second = policy.statements
    assert (first.effect, first.pattern, first.line) == ("deny", "GetObject", 2)
    assert first.arguments == (("repository", "r"), ("path", "a/"))
    assert str(first) == 'deny GetObject(repository="r", path="a/")'
    assert (second.effect, second.line, str(second)) == ("allow", 3, "*()")
    assert policy.text.startswith("# c")


def test_escaped_string_round_trips() -> None:
    (statement,) = parse_policy('GetObject(path="a\\"b\\\\c")').statements
    assert statement.arguments == (("path", 'a"b\\c'),)
    assert str(statement) == 'GetObject(path="a\\"b\\\\c")'
