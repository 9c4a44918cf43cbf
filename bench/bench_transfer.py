"""Upload and streaming download through the SDK versus a warm ``cp`` of the same file.

One run, side by side: a local tilde-server (in this process, on a loopback port) stores the file; the SDK
client runs in a child process so its peak resident memory (``ru_maxrss`` from ``wait4``) is its own.

- cp: copy the source file to a new file with the page cache warm (the floor for moving the bytes locally).
- upload: ``session.objects.put(path, Path(file))`` and commit (parallel multipart above the threshold).
- download: ``objects.get(path, cache=False).iter_bytes(1 MiB)``, bytes counted and dropped (a second,
  untimed pass hashes them to check they are intact).
- raw httpx: the same download with a bare ``httpx.stream`` (what the SDK's streaming adds on top of it).

Run: ``hatch run python bench/bench_transfer.py [--size MIB] [--part-size MIB] [--parallel N]``.
Prints seconds, throughput, speed as a fraction of cp's and the client's own peak RSS (VmHWM); asserts
nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tilde.server import LocalServer

MIB = 1024 * 1024

PEAK_RSS = """
def peak_rss():
    # VmHWM is this process's own high-water mark; ru_maxrss would include the parent's at fork time.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0
"""

UPLOAD = (
    PEAK_RSS
    + """
import json, sys, time
from pathlib import Path
from typing import Any
from tilde.data import Client
endpoint, key, repo_path, source, part_size, parallel = sys.argv[1:7]
with Client(endpoint_url=endpoint, api_key=key, multipart_part_size=int(part_size),
            max_parts_in_flight=int(parallel)) as client:
    repo = client.repository(repo_path)
    started = time.perf_counter()
    with repo.session() as session:
        session.objects.put("bench/blob.bin", Path(source))
        session.commit("bench upload")
    print(json.dumps({"seconds": time.perf_counter() - started, "rss": peak_rss()}))
"""
)

DOWNLOAD = (
    PEAK_RSS
    + """
import hashlib, json, sys, time
from tilde.data import Client, ReadOnlyObjects
endpoint, key, repo_path = sys.argv[1:4]
with Client(endpoint_url=endpoint, api_key=key) as client:
    repo = client.repository(repo_path)
    objects = ReadOnlyObjects(client, repo.org, repo.name)
    started = time.perf_counter()
    received = 0
    with objects.get("bench/blob.bin", cache=False) as reader:
        for chunk in reader.iter_bytes(1024 * 1024):
            received += len(chunk)
    seconds = time.perf_counter() - started
    # Untimed second pass: check the bytes, without charging hashing (or disk writes) to the transfer.
    digest = hashlib.sha256()
    with objects.get("bench/blob.bin", cache=False) as reader:
        for chunk in reader.iter_bytes(1024 * 1024):
            digest.update(chunk)
    report = {"seconds": seconds, "bytes": received, "sha256": digest.hexdigest(), "rss": peak_rss()}
    print(json.dumps(report))
"""
)

RAW_DOWNLOAD = (
    PEAK_RSS
    + """
import json, sys, time
import httpx
endpoint, key, repo_path = sys.argv[1:4]
org, repo = repo_path.split("/")
url = f"{endpoint}/api/v1/organizations/{org}/repositories/{repo}/object"
with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
    started = time.perf_counter()
    received = 0
    with http.stream("GET", url, params={"path": "bench/blob.bin"}, follow_redirects=True) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(1024 * 1024):
            received += len(chunk)
    print(json.dumps({"seconds": time.perf_counter() - started, "bytes": received, "rss": peak_rss()}))
"""
)


def write_source(path: Path, size: int) -> None:
    """Write ``size`` bytes that differ per MiB (so nothing downstream can deduplicate them)."""
    with path.open("wb") as handle:
        for offset in range(0, size, MIB):
            seed = hashlib.sha256(offset.to_bytes(8, "big")).digest()
            handle.write((seed * (MIB // len(seed) + 1))[: min(MIB, size - offset)])


def run_child(script: str, *args: str) -> tuple[dict[str, Any], int]:
    """Run a client script in a child; return its JSON report and its own peak RSS in bytes."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"client child failed with {done.returncode}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report, int(report["rss"])


def timed_cp(source: Path, target: Path) -> float:
    shutil.copyfile(source, target)  # warm the page cache
    target.unlink()
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    return time.perf_counter() - started


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="file size in MiB (default 1024)")
    parser.add_argument("--part-size", type=int, default=64, help="multipart part size in MiB (default 64)")
    parser.add_argument("--parallel", type=int, default=8, help="parts in flight (default 8)")
    args = parser.parse_args()
    size = args.size * MIB

    with tempfile.TemporaryDirectory(prefix="tilde-bench-transfer-") as scratch:
        root = Path(scratch)
        source = root / "source.bin"
        write_source(source, size)
        with LocalServer(data_dir=root / "server") as server:
            with httpx.Client(
                base_url=server.endpoint_url.rstrip("/") + "/api/v1",
                headers={"Authorization": f"Bearer {server.api_key}"},
                timeout=60,
            ) as api:
                api.post("/organizations", json={"name": "bench", "display_name": "Bench"}).raise_for_status()
                api.post(
                    "/organizations/bench/repositories", json={"name": "transfer", "visibility": "private"}
                ).raise_for_status()
            endpoint, key = server.endpoint_url, server.api_key
            cp_seconds = timed_cp(source, root / "cp.bin")
            (root / "cp.bin").unlink()
            upload_args = (endpoint, key, "bench/transfer", str(source), str(args.part_size * MIB))
            # The first upload also pays for the server's first touch of fresh memory pages (slow on a new
            # VM); cp is measured warm, so the upload is too, and the cold figure is shown beside it.
            cold, cold_rss = run_child(UPLOAD, *upload_args, str(args.parallel))
            upload, upload_rss = run_child(UPLOAD, *upload_args, str(args.parallel))
            download, download_rss = run_child(DOWNLOAD, endpoint, key, "bench/transfer")
            intact = download["bytes"] == size and download["sha256"] == sha256_of(source)
            raw, raw_rss = run_child(RAW_DOWNLOAD, endpoint, key, "bench/transfer")

    print(f"file: {args.size} MiB   parts: {args.part_size} MiB x {args.parallel} in flight")
    print(f"{'':12} {'seconds':>9} {'MiB/s':>9} {'speed/cp':>9} {'client peak RSS':>16}")
    print(f"{'cp (warm)':12} {cp_seconds:9.2f} {args.size / cp_seconds:9.0f} {1.0:9.2f} {'-':>16}")
    for name, seconds, rss in (
        ("upload cold", cold["seconds"], cold_rss),
        ("upload", upload["seconds"], upload_rss),
        ("download", download["seconds"], download_rss),
        ("raw httpx", raw["seconds"], raw_rss),
    ):
        ratio = cp_seconds / seconds
        print(f"{name:12} {seconds:9.2f} {args.size / seconds:9.0f} {ratio:9.2f} {rss / MIB:13.0f} MiB")
    print(f"download identical to source: {intact}")


if __name__ == "__main__":
    main()
