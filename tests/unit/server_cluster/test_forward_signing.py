"""The signed ``X-Tilde-Forwarded`` header: only for the request it was made for, by a secret holder, now."""

from __future__ import annotations

import time

import pytest

from tilde.server.cluster.forward import MAX_SKEW, ForwardRefused, sign_forward, verify_forward

SECRET = b"s" * 32
TARGET = "/api/v1/organizations/o/repositories/r/sandboxes/sbx-1/logs/stdout?follow=1"


def _signed(**overrides: object) -> str:
    args: dict[str, object] = {
        "secret": SECRET,
        "node_id": "node-a",
        "method": "GET",
        "target": TARGET,
        "client": ("203.0.113.7", 51234),
        "request_id": "req-00000000000000ab",
    }
    args.update(overrides)
    return sign_forward(**args)  # type: ignore[arg-type]


def test_a_header_verifies_for_the_request_it_was_signed_for() -> None:
    forwarded = verify_forward(SECRET, _signed(), "GET", TARGET)

    assert forwarded.node_id == "node-a"
    assert forwarded.client == ("203.0.113.7", 51234)
    assert forwarded.request_id == "req-00000000000000ab"


def test_a_header_without_a_client_address_verifies_with_none() -> None:
    forwarded = verify_forward(SECRET, _signed(client=None), "GET", TARGET)

    assert forwarded.client is None


def test_an_ipv6_client_address_survives_the_round_trip() -> None:
    forwarded = verify_forward(SECRET, _signed(client=("2001:db8::1", 443)), "GET", TARGET)

    assert forwarded.client == ("2001:db8::1", 443)


def test_a_header_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(ForwardRefused, match="signature"):
        verify_forward(SECRET, _signed(secret=b"t" * 32), "GET", TARGET)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/api/v1/organizations/o/repositories/r/sandboxes/sbx-2/logs/stdout?follow=1"),
        ("GET", TARGET.replace("follow=1", "follow=0")),
        ("GET", TARGET.partition("?")[0]),
        ("DELETE", TARGET),
    ],
    ids=["other-path", "other-query", "no-query", "other-method"],
)
def test_a_header_replayed_on_another_request_is_refused(method: str, target: str) -> None:
    with pytest.raises(ForwardRefused, match="signature"):
        verify_forward(SECRET, _signed(), method, target)


@pytest.mark.parametrize(
    ("field", "value"),
    [("node", "node-b"), ("client", "198.51.100.1%3A1"), ("rid", "req-1"), ("ts", "1")],
)
def test_a_header_with_a_changed_field_is_refused(field: str, value: str) -> None:
    parts = [
        f"{name}={value}" if name == field else f"{name}={raw}"
        for name, _, raw in (part.partition("=") for part in _signed().split(";"))
    ]

    with pytest.raises(ForwardRefused, match="signature"):
        verify_forward(SECRET, ";".join(parts), "GET", TARGET)


@pytest.mark.parametrize("offset", [-(MAX_SKEW + 5), MAX_SKEW + 5], ids=["old", "future"])
def test_a_correctly_signed_header_outside_the_time_window_is_refused(offset: float) -> None:
    header = _signed(timestamp=time.time() + offset)

    with pytest.raises(ForwardRefused, match="stale"):
        verify_forward(SECRET, header, "GET", TARGET)


def test_the_time_window_is_measured_from_the_receivers_clock() -> None:
    header = _signed(timestamp=1_000_000.0)

    assert verify_forward(SECRET, header, "GET", TARGET, now=1_000_000.0 + MAX_SKEW - 1).node_id == "node-a"
    with pytest.raises(ForwardRefused, match="stale"):
        verify_forward(SECRET, header, "GET", TARGET, now=1_000_000.0 + MAX_SKEW + 1)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "node-a",
        "node=node-a;ts=1;client=;rid=",
        "node=node-a;node=node-b;ts=1;client=;rid=;sig=00",
        "node=;ts=1;client=;rid=;sig=00",
        "node=node-a;ts=soon;client=;rid=;sig=00",
    ],
    ids=["empty", "no-fields", "no-signature", "repeated-field", "no-node", "bad-timestamp"],
)
def test_a_malformed_header_is_refused(header: str) -> None:
    with pytest.raises(ForwardRefused, match="malformed"):
        verify_forward(SECRET, header, "GET", TARGET)


def test_the_header_never_contains_the_secret() -> None:
    secret = b"a-recognisable-cluster-secret-00"

    header = sign_forward(secret, "node-a", "GET", TARGET)

    assert secret.decode() not in header
    assert secret.hex() not in header
