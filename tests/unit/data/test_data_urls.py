"""``tilde://ORG/REPO[@REF]/PATH`` locations: the parser the CLI (and later fsspec) shares."""

from __future__ import annotations

import pytest

from tilde.data.urls import TildeURL, is_tilde_url, parse_repo_path, parse_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tilde://acme/data", TildeURL("acme", "data")),
        ("tilde://acme/data/", TildeURL("acme", "data")),
        ("tilde://acme/data/a/b.txt", TildeURL("acme", "data", "a/b.txt")),
        ("tilde://acme/data/a/", TildeURL("acme", "data", "a/")),
        ("tilde://acme/data@3f2a/a b%20ü.txt", TildeURL("acme", "data", "a b%20ü.txt", "3f2a")),
        ("tilde://acme/data@3f2a", TildeURL("acme", "data", "", "3f2a")),
    ],
)
def test_parse(text: str, expected: TildeURL) -> None:
    assert parse_url(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3://bucket/key", "is not a tilde:// URL"),
        ("tilde://", "organization name is missing"),
        ("tilde://acme", "repository name is missing"),
        ("tilde://acme/", "repository name is missing"),
        ("tilde://acme/data@", "invalid ref"),
        ("tilde://acme/data//abs", "must not start with '/'"),
        ("tilde://ac me/data", "invalid organization name"),
    ],
)
def test_malformed_urls_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_url(text)


def test_round_trip_and_helpers() -> None:
    url = parse_url("tilde://acme/data@c1/images/cat.png")
    assert str(url) == "tilde://acme/data@c1/images/cat.png"
    assert url.repo_path == "acme/data"
    assert url.name == "cat.png"
    assert not url.is_prefix
    assert str(url.child("x")) == "tilde://acme/data@c1/images/cat.png/x"
    root = parse_url("tilde://acme/data")
    assert root.is_prefix
    assert str(root) == "tilde://acme/data"
    assert str(root.child("a/b")) == "tilde://acme/data/a/b"
    assert str(parse_url("tilde://acme/data/dir/").child("f")) == "tilde://acme/data/dir/f"
    assert is_tilde_url("tilde://x")
    assert not is_tilde_url("./tilde://x")


def test_parse_repo_path() -> None:
    assert parse_repo_path("acme/data") == ("acme", "data")
    assert parse_repo_path("tilde://acme/data") == ("acme", "data")
    for bad in ("acme", "acme/data/extra", "/data", "acme/", "tilde://acme/data/path"):
        with pytest.raises(ValueError):
            parse_repo_path(bad)
