"""Uploads through dropped connections, 503 bursts and expired part URLs (fault proxy, real server)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fault_proxy import PASS, Decision, FaultProxy, random_plan
from faults_helpers import MIB, part_puts, sha256_of_object, write_random

from tilde.data import Repository


@pytest.mark.slow
def test_300_mib_upload_through_resets_and_503_bursts_is_byte_identical(
    proxy: FaultProxy, faulty_repo: Repository, direct_repo: Repository, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    expected = write_random(source, 300 * MIB, seed=8)
    chaos = random_plan(8, part_resets=0.10, burst_every=9, burst_length=2)
    # Whatever the dice say: part 2's first try is reset half-way, part 3's first URL is refused (403, as an
    # expired or tampered URL is) and part 4's first try meets a 503 with Retry-After.
    forced = {"2": Decision("reset", fraction=0.5), "3": Decision("tamper"), "4": Decision("unavailable")}

    def plan(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Decision:
        if path.startswith("/uploads/") and (query.get("part") or [""])[0] in forced:
            return forced.pop(query["part"][0])
        return chaos(method, path, query, headers)

    proxy.plan = plan
    client = faulty_repo._client
    client.upload_settings = type(client.upload_settings)(  # type: ignore[attr-defined]
        part_size=16 * MIB, max_parts_in_flight=4, part_attempts=8, retry_backoff=0.05
    )
    with faulty_repo.session() as session:
        session.objects.put("big.bin", source)
        commit_id = session.commit("through the storm")
    proxy.plan = lambda method, path, query, headers: PASS

    tries = part_puts(proxy)
    assert sorted(tries) == list(range(1, 20))  # 300 MiB in 16 MiB parts
    for number, decisions in tries.items():
        # Only failed tries were repeated: each part went through exactly once, as its last try.
        assert [d.kind for d in decisions[:-1]] == [d.kind for d in decisions if d.kind != "pass"], number
        assert decisions[-1].kind == "pass", number
    assert [d.kind for d in tries[2][:1] + tries[3][:1] + tries[4][:1]] == ["reset", "tamper", "unavailable"]
    kinds = Counter(d.kind for decisions in tries.values() for d in decisions)
    assert kinds["reset"] >= 1
    assert Counter(r.decision.kind for r in proxy.records)["unavailable"] >= 2
    # Every try of a part asked for a fresh URL first (a refused or expired URL is never sent again).
    urls = Counter(r.query["part_number"][0] for r in proxy.records if r.path.endswith("/multipart/part"))
    for number, decisions in tries.items():
        assert urls[str(number)] >= len(decisions), number
    # After a 503 the part waited at least the Retry-After the proxy sent (1 s) before its next try.
    for record in proxy.matching(lambda r: r.part_number is not None and r.decision.kind == "unavailable"):
        later = proxy.matching(
            lambda r, n=record.part_number, t=record.arrived: r.part_number == n and r.arrived > t
        )
        assert later[0].arrived - record.arrived >= 1.0
    assert sha256_of_object(direct_repo, "big.bin") == expected
    log = list(direct_repo.commits.list())
    assert [commit.id for commit in log] == [commit_id]
