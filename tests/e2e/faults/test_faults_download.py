"""Downloads through connections cut mid-body resume from the last byte received (ranged GETs)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fault_proxy import PASS, Decision, FaultProxy, Record
from faults_helpers import latest

from tilde.core.errors import TransportError
from tilde.data import Repository
from tilde.data.object_reader import RESUME_ATTEMPTS

MIB = 1024 * 1024


def object_gets(proxy: FaultProxy) -> list[Record]:
    return proxy.matching(lambda record: record.method == "GET" and record.path.endswith("/object"))


@pytest.fixture
def stored(faulty_repo: Repository) -> bytes:
    data = random.Random(11).randbytes(12 * MIB + 5)
    with faulty_repo.session() as session:
        session.objects.put("big.bin", data)
        session.commit("to download")
    return data


def test_a_streaming_read_resumes_where_the_connection_dropped(
    proxy: FaultProxy, faulty_repo: Repository, stored: bytes
) -> None:
    cuts = [3 * MIB + 1, 2 * MIB]

    def plan(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Decision:
        if method == "GET" and path.endswith("/object") and cuts:
            return Decision("cut", cut_after=cuts.pop(0))
        return PASS

    proxy.plan = plan
    proxy.records.clear()
    with latest(faulty_repo).get("big.bin", cache=False) as reader:
        received = b"".join(reader.iter_bytes(256 * 1024))
    assert received == stored
    gets = object_gets(proxy)
    # Three GETs: the whole object, then from byte 3 MiB + 1, then 2 MiB further: never from the start again.
    assert [get.headers.get("range") for get in gets] == [
        None,
        f"bytes={3 * MIB + 1}-",
        f"bytes={5 * MIB + 1}-",
    ]


def test_a_read_gives_up_after_repeated_drops_without_progress(
    proxy: FaultProxy, faulty_repo: Repository, stored: bytes
) -> None:
    proxy.plan = lambda method, path, query, headers: (
        Decision("cut", cut_after=0) if method == "GET" and path.endswith("/object") else PASS
    )
    proxy.records.clear()
    with latest(faulty_repo).get("big.bin", cache=False) as reader, pytest.raises(TransportError):
        reader.read()
    # The first GET and five resumptions, all from byte 0 as none brought a byte.
    assert len(object_gets(proxy)) == 1 + RESUME_ATTEMPTS


def test_download_file_resumes_cut_ranges_from_their_last_byte(
    proxy: FaultProxy, faulty_repo: Repository, stored: bytes, tmp_path: Path
) -> None:
    cut: list[int] = []
    # Three workers, three ranges (a third each).
    third = -(-len(stored) // 3)
    ranges = [0, third, 2 * third]

    def plan(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Decision:
        # The first GET of each range is cut MiB + 7 bytes in (whichever order the workers start in).
        start = int(headers.get("range", "bytes=-1-").split("=")[1].split("-")[0] or -1)
        if method == "GET" and path.endswith("/object") and start in ranges and start not in cut:
            cut.append(start)
            return Decision("cut", cut_after=MIB + 7)
        return PASS

    proxy.plan = plan
    proxy.records.clear()
    target = tmp_path / "big.bin"
    size = latest(faulty_repo).download_file("big.bin", target, max_workers=3)
    assert size == len(stored)
    assert target.read_bytes() == stored
    assert not list(tmp_path.glob("*.tilde-download*"))
    starts = [int(get.headers["range"].split("=")[1].split("-")[0]) for get in object_gets(proxy)]
    # Each range was cut once and asked for once more from where its bytes stopped.
    assert sorted(cut) == ranges
    assert sorted(starts) == sorted([*ranges, *(start + MIB + 7 for start in cut)])
