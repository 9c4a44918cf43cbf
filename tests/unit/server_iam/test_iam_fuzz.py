"""Randomised robustness of the parser (seeded, so every run checks the same texts).

Properties: `validate_policy` never raises, points inside the text, reports at most one error per line in line
order; a text that validates also parses, and one that does not makes `parse_policy` raise the same errors.
"""

from __future__ import annotations

import random

import pytest

from tilde.server.iam import PolicySyntaxError, parse_policy, validate_policy

FRAGMENTS = [
    "GetObject", "ListRepositories", "*", "Get*", "?", "deny", "allow", "Allow", "RunAs", "Nope", "(", ")",
    "()", '"', '"x"', '""', '"a\\"b"', "\\", "=", ",", "path", "repository", "agent", "role", "repo", "#",
    " ", "  ", "\t", "\n", "\r\n", "\r", "\x00", "\x7f", "é", "\u2028", "'", "/", "data/", "ml-*", ";",
    "[", "]",
]  # fmt: skip
SEEDS = [
    'GetObject(repository="ml-*", path="data/")',
    "deny DeleteObject()\nListRepositories()  # c",
    'RunAs(agent="bot", role="ci")',
    "*()",
]


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 40)))
    chars = list(rng.choice(SEEDS))
    for _ in range(rng.randint(1, 6)):
        position = rng.randint(0, len(chars))
        operation = rng.random()
        if operation < 0.4 and chars:
            del chars[min(position, len(chars) - 1)]
        elif operation < 0.8:
            chars.insert(position, rng.choice(FRAGMENTS))
        else:
            chars.insert(position, chr(rng.randint(0, 0x2FFF)))
    return "".join(chars)


def _check(text: str) -> None:
    errors = validate_policy(text)
    lines = text.split("\n")
    assert [e.line for e in errors] == sorted({e.line for e in errors}), errors
    for error in errors:
        assert 1 <= error.line <= len(lines)
        assert 1 <= error.column <= len(lines[error.line - 1]) + 1
        assert error.message
    if errors:
        with pytest.raises(PolicySyntaxError) as caught:
            parse_policy(text)
        assert caught.value.errors == errors
    else:
        parse_policy(text)


@pytest.mark.parametrize("seed", range(4))
def test_validate_never_raises_and_agrees_with_parse(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        _check(_random_text(rng))


@pytest.mark.parametrize(
    "text",
    ["\x00", "\n" * 50, "(" * 1000, '"' * 999, "#" + "\\" * 100, "deny " * 200, "GetObject(" + "path=" * 300],
)
def test_degenerate_texts(text: str) -> None:
    _check(text)
