"""Names and ids for URL paths: the server's patterns, no stricter, and percent-encoding."""

from __future__ import annotations

import uuid

import pytest

from tilde.core.names import (
    check_agent,
    check_id,
    check_org,
    check_repository,
    check_role,
    check_secret_key,
    check_uuid,
    segment,
)


@pytest.mark.parametrize("name", ["ab", "acme", "a-1", "0rg", "x" * 63])
def test_org_role_agent_names_the_server_accepts(name: str) -> None:
    assert check_org(name) == check_role(name) == check_agent(name) == name


@pytest.mark.parametrize(
    "name", ["", "a", "-acme", "Acme", "ac_me", "acme/repositories", "acme\n", "a" * 64, "ac me", None, 5]
)
def test_org_names_the_server_refuses(name: object) -> None:
    with pytest.raises(ValueError, match="invalid organization name"):
        check_org(name)


def test_repository_names_also_take_underscores() -> None:
    assert check_repository("my_data-1") == "my_data-1"
    for bad in ("da?ta", "da/ta", "_data", "Data", "d"):
        with pytest.raises(ValueError, match="invalid repository name"):
            check_repository(bad)


def test_secret_keys() -> None:
    for good in ("A", "_x", "DB_PASSWORD", "key-1", "k" * 256):
        assert check_secret_key(good) == good
    for bad in ("", "1KEY", "a.b", "a/b", "k" * 257, "KEY\n"):
        with pytest.raises(ValueError, match="invalid secret key"):
            check_secret_key(bad)


def test_uuids() -> None:
    value = str(uuid.uuid4())
    assert check_uuid(value, "session id") == value
    assert check_uuid(value.upper(), "session id") == value.upper()
    for bad in ("s1", value.replace("-", ""), "{" + value + "}", value + "/finish", ""):
        with pytest.raises(ValueError, match="invalid session id"):
            check_uuid(bad, "session id")


def test_opaque_ids() -> None:
    assert check_id("3f2a9c", "commit id") == "3f2a9c"
    for bad in ("", ".", "..", " c1", 7):
        with pytest.raises(ValueError, match="invalid commit id"):
            check_id(bad, "commit id")


def test_segments_are_percent_encoded() -> None:
    assert segment("a/b?c#d%e f") == "a%2Fb%3Fc%23d%25e%20f"
    assert segment("plain-name_1") == "plain-name_1"
