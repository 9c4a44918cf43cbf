"""Waiting for killed sandbox processes to leave their cgroups: short pauses first, the same total budget."""

from __future__ import annotations

from tilde.server.sandbox import cgroups


def test_the_first_pauses_are_short_and_grow_to_ten_milliseconds() -> None:
    waits = cgroups._waits(100)
    assert len(waits) == 100
    assert waits[0] <= 0.001  # processes usually leave within a millisecond or two of the kill
    assert waits == sorted(waits)
    assert max(waits) == 0.01


def test_the_total_wait_stays_about_what_it_was() -> None:
    # 100 and 200 pauses of 10 ms before: about a second for the kill, two for the directory.
    assert 0.95 <= sum(cgroups._waits(100)) <= 1.0
    assert 1.95 <= sum(cgroups._waits(200)) <= 2.0
