"""Shared by the fault tests: seeded data, what the server holds, the part PUTs the proxy saw."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from fault_proxy import Decision, FaultProxy

from tilde.data import ReadOnlyObjects, Repository

MIB = 1024 * 1024


def write_random(path: Path, size: int, seed: int) -> str:
    """Write ``size`` seeded random bytes; return their SHA-256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as sink:
        for offset in range(0, size, 8 * MIB):
            block = rng.randbytes(min(8 * MIB, size - offset))
            digest.update(block)
            sink.write(block)
    return digest.hexdigest()


def latest(repo: Repository) -> ReadOnlyObjects:
    """The repository's objects as of its latest commit."""
    return ReadOnlyObjects(repo._client, repo.org, repo.name)


def sha256_of_object(repo: Repository, path: str) -> str:
    digest = hashlib.sha256()
    with latest(repo).get(path, cache=False) as reader:
        for chunk in reader.iter_bytes(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def part_puts(proxy: FaultProxy) -> dict[int, list[Decision]]:
    """Every part PUT the proxy saw, by part number, with what it did to each."""
    tries: dict[int, list[Decision]] = {}
    for record in proxy.matching(lambda record: record.method == "PUT" and record.part_number is not None):
        assert record.part_number is not None
        tries.setdefault(record.part_number, []).append(record.decision)
    return tries
