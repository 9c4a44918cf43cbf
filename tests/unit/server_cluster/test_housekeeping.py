"""Housekeeping on a server alone (SQLite): every job runs at each round, in order, as start-up always did."""

from __future__ import annotations

import pytest

from tilde.server.cluster.housekeeping import Housekeeping


def test_a_server_alone_runs_every_job_each_round_in_order() -> None:
    calls: list[str] = []
    jobs = Housekeeping([(name, lambda name=name: calls.append(name)) for name in ("first", "second")])
    assert not jobs.shared
    assert jobs.run_once() == ["first", "second"]
    assert jobs.run_once() == ["first", "second"]
    assert calls == ["first", "second", "first", "second"]
    jobs.start()  # nothing to share: no thread
    jobs.close()


def test_a_failing_job_is_raised_and_stops_the_round() -> None:
    calls: list[str] = []

    def broken() -> None:
        raise OSError("disk gone")

    jobs = Housekeeping([("broken", broken), ("after", lambda: calls.append("after"))])
    with pytest.raises(OSError, match="disk gone"):
        jobs.run_once()
    assert calls == []
