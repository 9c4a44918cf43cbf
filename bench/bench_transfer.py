"""One large file up and down: our SDK versus a warm ``cp`` and versus the published tilde-sdk 0.7.9.

One run, side by side, one local tilde-server (in this process, on a loopback port). Every client runs in a
child process of its own, so its peak resident memory (``VmHWM``) is its own; the published SDK runs in its
own virtual environment (made as ``bench_folders.py`` makes it, or given with ``--published-python``).

Cases, each with an untimed warm-up and then ``--rounds`` timed rounds (the median is reported):

- cp: ``cp`` of the source file to a new file (page cache warm): the floor for moving the bytes locally.
- cp, onto cold memory: the same, with the previous copy removed only afterwards (for comparison: a server
  writing a new upload file gets such memory; no target uses it).
- upload: ``session.objects.put(path, Path(file))`` and commit - ours and the published SDK's.
- stream: ``objects.get(path, cache=False).iter_bytes(1 MiB)``, bytes counted and dropped - ours and the
  published SDK's.
- download_file: ``objects.download_file(path, local_file)`` (parallel ranged GETs written in place) - ours;
  the published SDK has no such call, so its figure is the stream written to a file.

Targets (issue 10) are printed as met / missed with their ratio: upload >= 0.30x cp, >= 3x published, client
peak RSS <= 100 MiB; stream >= 0.30x cp with RSS <= 64 MiB; download_file >= 0.5x cp and >= 2x published.
``--json PATH`` writes the same as a list of ``{case, value, unit, target, met}``. Nothing is asserted.

Run: ``hatch run python bench/bench_transfer.py [--size MIB] [--rounds N] [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tilde.server import LocalServer

MIB = 1024 * 1024
PUBLISHED = "tilde-sdk==0.7.9"

PEAK_RSS = """
def peak_rss():
    # VmHWM is this process's own high-water mark (ru_maxrss of a child would include the parent's at fork).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0
"""

OURS_UPLOAD = (
    PEAK_RSS
    + """
import json, sys, time
from pathlib import Path
from tilde.data import Client
endpoint, key, repo_path, source, part_size, parallel = sys.argv[1:7]
settings = {"multipart_part_size": int(part_size), "max_parts_in_flight": int(parallel)}
with Client(endpoint_url=endpoint, api_key=key, **settings) as client:
    repo = client.repository(repo_path)
    started = time.perf_counter()
    with repo.session() as session:
        session.objects.put("bench/blob.bin", Path(source))
        commit_id = session.commit("bench upload")
    print(json.dumps({"seconds": time.perf_counter() - started, "rss": peak_rss(), "commit": commit_id}))
"""
)

PUBLISHED_UPLOAD = (
    PEAK_RSS
    + """
import json, sys, time
from pathlib import Path
import tilde
endpoint, key, repo_path, source = sys.argv[1:5]
with tilde.Client(api_key=key, endpoint_url=endpoint) as client:
    repo = client.repository(repo_path)
    started = time.perf_counter()
    with repo.session() as session:
        session.objects.put("bench/blob.bin", Path(source))
        commit_id = session.commit("bench upload")
    print(json.dumps({"seconds": time.perf_counter() - started, "rss": peak_rss(), "commit": commit_id}))
"""
)

OURS_STREAM = (
    PEAK_RSS
    + """
import json, sys, time
from tilde.data import Client, ReadOnlyObjects
endpoint, key, repo_path = sys.argv[1:4]
with Client(endpoint_url=endpoint, api_key=key) as client:
    repo = client.repository(repo_path)
    started = time.perf_counter()
    received = 0
    with ReadOnlyObjects(client, repo.org, repo.name).get("bench/blob.bin", cache=False) as reader:
        for chunk in reader.iter_bytes(1024 * 1024):
            received += len(chunk)
    print(json.dumps({"seconds": time.perf_counter() - started, "rss": peak_rss(), "bytes": received}))
"""
)

PUBLISHED_STREAM = (
    PEAK_RSS
    + """
import json, sys, time
import tilde
endpoint, key, repo_path, commit_id, target = sys.argv[1:6]
with tilde.Client(api_key=key, endpoint_url=endpoint) as client:
    commit = client.repository(repo_path).commits.get(commit_id)
    started = time.perf_counter()
    received = 0
    sink = open(target, "wb") if target != "-" else None
    with commit.objects.get("bench/blob.bin", cache=False) as reader:
        for chunk in reader.iter_bytes(1024 * 1024):
            received += len(chunk)
            if sink is not None:
                sink.write(chunk)
    if sink is not None:
        sink.close()
    print(json.dumps({"seconds": time.perf_counter() - started, "rss": peak_rss(), "bytes": received}))
"""
)

OURS_DOWNLOAD_FILE = (
    PEAK_RSS
    + """
import json, sys, time
from tilde.data import Client, ReadOnlyObjects
endpoint, key, repo_path, target = sys.argv[1:5]
with Client(endpoint_url=endpoint, api_key=key) as client:
    repo = client.repository(repo_path)
    started = time.perf_counter()
    size = ReadOnlyObjects(client, repo.org, repo.name).download_file("bench/blob.bin", target)
    print(json.dumps({"seconds": time.perf_counter() - started, "rss": peak_rss(), "bytes": size}))
"""
)


def write_source(path: Path, size: int) -> None:
    """Write ``size`` bytes that differ per MiB (so nothing downstream can deduplicate them)."""
    with path.open("wb") as handle:
        for offset in range(0, size, MIB):
            seed = hashlib.sha256(offset.to_bytes(8, "big")).digest()
            handle.write((seed * (MIB // len(seed) + 1))[: min(MIB, size - offset)])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def published_python(explicit: str | None) -> Path:
    """Return an interpreter with the published client: ``explicit``, or a cached venv (as bench_folders)."""
    if explicit:
        return Path(explicit)
    home = Path(tempfile.gettempdir()) / "tilde-bench-published-0.7.9"
    python = home / "bin" / "python"
    if not (home / ".ready").exists():
        venv.create(home, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", PUBLISHED], check=True, timeout=600)
        (home / ".ready").touch()
    return python


def run_child(
    python: Path | str, script: str, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a client script in a child process; return its JSON report."""
    done = subprocess.run(
        [str(python), "-c", script, *args], stdout=subprocess.PIPE, text=True, check=False, env=env
    )
    if done.returncode != 0:
        raise SystemExit(f"client child failed with {done.returncode}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def rounds(run: Callable[[], dict[str, Any]], count: int) -> dict[str, float]:
    """One untimed warm-up, then ``count`` rounds: the median seconds and the highest peak RSS."""
    run()
    reports = [run() for _ in range(count)]
    return {
        "seconds": statistics.median(report["seconds"] for report in reports),
        "rss": max(report.get("rss", 0) for report in reports),
    }


def timed_cp(source: Path, target: Path) -> dict[str, Any]:
    if target.exists():
        target.unlink()
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    return {"seconds": time.perf_counter() - started}


def timed_cold_cp(source: Path, target: Path) -> dict[str, Any]:
    """``cp`` into a new file while the previous copy is kept until afterwards, as a server's files are.

    The VM takes freed memory back after a few seconds and is slow to hand it out again; the plain cp case
    writes into the pages its removed target just freed, a server receiving an upload never can. Printed
    for comparison only (no target uses it).
    """
    fresh = target.with_name(target.name + ".new")
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(fresh)], check=True)
    seconds = time.perf_counter() - started
    os.replace(fresh, target)
    return {"seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per case (default 3)")
    parser.add_argument("--quick", action="store_true", help="256 MiB, 2 rounds")
    parser.add_argument(
        "--part-size", type=int, default=64, help="our multipart part size in MiB (default 64)"
    )
    parser.add_argument("--parallel", type=int, default=8, help="our parts in flight (default 8)")
    parser.add_argument("--json", type=Path, help="also write the results here, as a JSON list")
    parser.add_argument("--published-python", help="an interpreter with tilde-sdk 0.7.9 installed")
    parser.add_argument("--no-published", action="store_true", help="skip the published SDK's cases")
    args = parser.parse_args()
    if args.quick:
        args.size, args.rounds = 256, 2
    size = args.size * MIB
    published = None if args.no_published else published_python(args.published_python)
    published_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    with tempfile.TemporaryDirectory(prefix="tilde-bench-transfer-") as scratch:
        root = Path(scratch)
        source = root / "source.bin"
        write_source(source, size)
        expected = sha256_of(source)
        with LocalServer(data_dir=root / "server") as server:
            with httpx.Client(
                base_url=server.endpoint_url.rstrip("/") + "/api/v1",
                headers={"Authorization": f"Bearer {server.api_key}"},
                timeout=60,
            ) as api:
                api.post("/organizations", json={"name": "bench", "display_name": "Bench"}).raise_for_status()
                for name in ("ours", "published"):
                    api.post("/organizations/bench/repositories", json={"name": name}).raise_for_status()
            endpoint, key = server.endpoint_url, server.api_key
            python = sys.executable
            ours = (str(args.part_size * MIB), str(args.parallel))
            results: dict[str, dict[str, float]] = {}
            results["cp"] = rounds(lambda: timed_cp(source, root / "cp.bin"), args.rounds)
            results["cp, onto cold memory"] = rounds(
                lambda: timed_cold_cp(source, root / "cold-cp.bin"), args.rounds
            )
            results["upload"] = rounds(
                lambda: run_child(python, OURS_UPLOAD, endpoint, key, "bench/ours", str(source), *ours),
                args.rounds,
            )
            commit = {}
            if published is not None:

                def published_upload() -> dict[str, Any]:
                    report = run_child(
                        published,
                        PUBLISHED_UPLOAD,
                        endpoint,
                        key,
                        "bench/published",
                        str(source),
                        env=published_env,
                    )
                    commit["id"] = report["commit"]
                    return report

                results["upload, published"] = rounds(published_upload, args.rounds)
            results["stream"] = rounds(
                lambda: run_child(python, OURS_STREAM, endpoint, key, "bench/ours"), args.rounds
            )
            target = root / "downloaded.bin"

            def download_file() -> dict[str, Any]:
                # Like the cp case: the previous round's file goes first, so both write into a new file
                # whose pages the old one just gave back (download_file keeps an existing destination
                # until the new bytes are complete, which would make it the only case on cold memory).
                target.unlink(missing_ok=True)
                return run_child(python, OURS_DOWNLOAD_FILE, endpoint, key, "bench/ours", str(target))

            results["download_file"] = rounds(download_file, args.rounds)
            intact = sha256_of(target) == expected
            if published is not None:
                results["stream, published"] = rounds(
                    lambda: run_child(
                        published,
                        PUBLISHED_STREAM,
                        endpoint,
                        key,
                        "bench/published",
                        commit["id"],
                        "-",
                        env=published_env,
                    ),
                    args.rounds,
                )
                published_target = root / "published.bin"

                def published_download() -> dict[str, Any]:
                    published_target.unlink(missing_ok=True)
                    return run_child(
                        published,
                        PUBLISHED_STREAM,
                        endpoint,
                        key,
                        "bench/published",
                        commit["id"],
                        str(published_target),
                        env=published_env,
                    )

                results["download to a file, published"] = rounds(published_download, args.rounds)
    report(results, args.size, args.rounds, intact, args.json)


def report(
    results: dict[str, dict[str, float]], size_mib: int, count: int, intact: bool, json_path: Path | None
) -> None:
    cp = results["cp"]["seconds"]
    print(f"file: {size_mib} MiB; median of {count} rounds after a warm-up")
    print(f"{'case':32} {'seconds':>8} {'MiB/s':>7} {'x cp':>6} {'peak RSS':>9}")
    for name, figures in results.items():
        seconds = figures["seconds"]
        rss = f"{figures['rss'] / MIB:.0f} MiB" if figures.get("rss") else "-"
        print(f"{name:32} {seconds:8.2f} {size_mib / seconds:7.0f} {cp / seconds:6.2f} {rss:>9}")
    print(f"download_file identical to the source: {intact}")
    if "cp, onto cold memory" in results:
        cold = results["cp, onto cold memory"]["seconds"]
        print(f"upload vs cp onto cold memory (no target): {cold / results['upload']['seconds']:.2f}x")
    checks: list[dict[str, Any]] = []

    def target(case: str, value: float, unit: str, goal: float, *, at_most: bool = False) -> None:
        met = value <= goal if at_most else value >= goal
        checks.append({"case": case, "value": round(value, 3), "unit": unit, "target": goal, "met": met})

    target("upload vs cp", cp / results["upload"]["seconds"], "x cp", 0.30)
    target("upload client peak RSS", results["upload"]["rss"] / MIB, "MiB", 100, at_most=True)
    target("stream vs cp", cp / results["stream"]["seconds"], "x cp", 0.30)
    target("stream client peak RSS", results["stream"]["rss"] / MIB, "MiB", 64, at_most=True)
    target("download_file vs cp", cp / results["download_file"]["seconds"], "x cp", 0.5)
    if "upload, published" in results:
        ratio = results["upload, published"]["seconds"] / results["upload"]["seconds"]
        target("upload vs published", ratio, "x published", 3.0)
        ratio = results["download to a file, published"]["seconds"] / results["download_file"]["seconds"]
        target("download_file vs published", ratio, "x published", 2.0)
    print()
    for check in checks:
        verdict = "met" if check["met"] else "MISSED"
        bound = "<=" if check["unit"] == "MiB" else ">="
        case, value, unit, goal = check["case"], check["value"], check["unit"], check["target"]
        print(f"{case:32} {value:8.2f} {unit:12} target {bound} {goal:<5} {verdict}")
    if json_path is not None:
        json_path.write_text(json.dumps(checks, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
