"""Sandbox latencies of the local tilde-server runtime, over real HTTP and websockets.

Measured side by side in one run:

- start: a service sandbox from ``POST /sandboxes`` until its status is ``running``, on an empty repository
  and on a large one (10,000 files, 1 GiB; 1,000 files, 100 MiB with ``--quick``). The repository's view is a
  tree of hard links shared by every sandbox starting on the same commit, so the ratio large/empty stays near
  1. A new commit's tree is its parent's plus a thin layer of the commit's changes; after a server restart
  the first sandbox links the whole tree (a link per file, no contents copied). For scale, the time to merely
  copy the same files (what a copying runtime would have to do at least) is measured too.
- exec: ``sh.run("true")``'s wire round trip (open the /exec websocket, LAUNCH ``true``, STDIN_CLOSE, read
  EXIT).
- execute: ``repo.execute("true")``'s wire calls (create a one-shot sandbox, long-poll its status until it
  ends, read its log).

Run: ``hatch run python bench/bench_sandbox.py [--quick] [--rounds N]``. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tilde.server import LocalServer

FILL = """
import os
count, size = {count}, {size}
for n in range(count):
    d = f"d{{n % 100:02d}}"
    os.makedirs(d, exist_ok=True)
    with open(f"{{d}}/f{{n:05d}}.bin", "wb") as handle:
        handle.write(os.urandom(size))
"""


#: The figures are the runtime's own costs on the host root filesystem (an image's layers are measured
#: by the image tests): every image name maps to it, in this process and the server it starts.
os.environ.setdefault("TILDE_SERVER_HOST_IMAGE", "all")


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p90_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000


class Bench:
    def __init__(self, server: LocalServer, api: httpx.Client) -> None:
        self.server = server
        self.api = api

    def repo(self, name: str) -> str:
        assert self.api.post("/organizations/bench/repositories", json={"name": name}).status_code == 201
        return f"/organizations/bench/repositories/{name}/sandboxes"

    def wait(self, base: str, sandbox_id: str, while_: str | None = None) -> dict[str, Any]:
        while True:
            params: dict[str, Any] = {"wait": 30}
            if while_:
                params["while"] = while_
            body: dict[str, Any] = self.api.get(f"{base}/{sandbox_id}/status", params=params).json()
            if (body["status"] != while_) if while_ else body["status"] not in ("starting", "running"):
                return body

    def fill(self, base: str, count: int, size: int) -> float:
        started = time.perf_counter()
        body = {"image": "host", "command": ["python3", "-c", FILL.format(count=count, size=size)]}
        sandbox_id = self.api.post(base, json=body).json()["sandbox_id"]
        status = self.wait(base, sandbox_id)
        assert status["status_reason"] == "committed", status
        return time.perf_counter() - started

    def start_service(self, base: str) -> tuple[float, str]:
        started = time.perf_counter()
        sandbox_id = self.api.post(base, json={"image": "host", "mode": "service"}).json()["sandbox_id"]
        status = self.wait(base, sandbox_id, "starting")
        elapsed = time.perf_counter() - started
        assert status["status"] == "running", status
        return elapsed, sandbox_id

    def stop(self, base: str, sandbox_id: str) -> None:
        self.api.delete(f"{base}/{sandbox_id}")
        self.wait(base, sandbox_id)

    def exec_true(self, base: str, sandbox_id: str) -> float:
        url = self.server.endpoint_url.replace("http://", "ws://") + f"/api/v1{base}/{sandbox_id}/exec"
        started = time.perf_counter()
        with connect(url, additional_headers={"Authorization": f"Bearer {self.server.api_key}"}) as ws:
            ws.send(b"\x00" + json.dumps({"cmd": ["true"]}).encode())
            with contextlib.suppress(ConnectionClosed):  # the command may have ended already
                ws.send(b"\x02")  # STDIN_CLOSE, as sh.run sends it
            while True:
                message = ws.recv()
                if isinstance(message, bytes) and message[:1] == b"\x05":
                    break
        return time.perf_counter() - started

    def execute_true(self, base: str) -> float:
        started = time.perf_counter()
        sandbox_id = self.api.post(base, json={"image": "host", "command": ["true"]}).json()["sandbox_id"]
        status = self.wait(base, sandbox_id)
        self.api.get(f"{base}/{sandbox_id}/logs/stdout")
        elapsed = time.perf_counter() - started
        assert status["status"] == "done", status
        return elapsed


def copy_baseline(data_dir: Path, count: int) -> float:
    """Copy ``count`` of the largest blob files (a copying runtime's minimum work) and return the seconds."""
    blobs = sorted(
        (p for p in (data_dir / "blobs").rglob("*") if p.is_file() and len(p.name) == 64),
        key=lambda p: p.stat().st_size,
        reverse=True,
    )[:count]
    with tempfile.TemporaryDirectory(dir=data_dir) as target:
        started = time.perf_counter()
        for n, blob in enumerate(blobs):
            shutil.copyfile(blob, f"{target}/{n}")
        return time.perf_counter() - started


def timed(rounds: int, action: Callable[[], float]) -> list[float]:
    action()  # warm-up
    return [action() for _ in range(rounds)]


def client(server: LocalServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.endpoint_url + "/api/v1",
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=600,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized: 1,000 files / 100 MiB")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    count, size = (1_000, 100 * 1024) if args.quick else (10_000, 100 * 1024 + 3)
    rounds = args.rounds or (10 if args.quick else 30)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    try:
        with LocalServer(data_dir=data_dir) as server, client(server) as api:
            assert (
                api.post("/organizations", json={"name": "bench", "display_name": "Bench"}).status_code == 201
            )
            bench = Bench(server, api)
            empty, large = bench.repo("empty"), bench.repo("large")
            fill_seconds = bench.fill(large, count, size)

            def start(base: str) -> Callable[[], float]:
                def run() -> float:
                    elapsed, sandbox_id = bench.start_service(base)
                    bench.stop(base, sandbox_id)
                    return elapsed

                return run

            start_empty: list[float] = []
            start_large: list[float] = []
            start_next: list[float] = []
            for n in range(max(3, rounds // 3)):
                start_empty.append(start(empty)())
                start_large.append(start(large)())
                # A new commit: its tree is the parent's plus a thin layer with the commit's changes.
                bench.fill(large, 1, n + 1)
                start_next.append(start(large)())
            copy = copy_baseline(server.data_dir, count)
            _, shell = bench.start_service(empty)
            exec_samples = timed(rounds * 10, lambda: bench.exec_true(empty, shell))
            bench.stop(empty, shell)
            execute_samples = timed(rounds, lambda: bench.execute_true(empty))
        # After a restart nothing is cached: the first sandbox links the whole tree (one hard link per file).
        start_cold: list[float] = []
        for _ in range(3):
            with LocalServer(data_dir=data_dir) as server, client(server) as api:
                bench = Bench(server, api)
                elapsed, sandbox_id = bench.start_service(large)
                bench.stop(large, sandbox_id)
                start_cold.append(elapsed)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    print(f"large repository: {count} files, {count * size / 2**20:.0f} MiB (filled in {fill_seconds:.1f} s)")
    print(f"{'measure':<48}{'p50 ms':>10}{'p90 ms':>10}")
    rows = [
        ("start service sandbox, empty repo", start_empty),
        (f"start service sandbox, {count} files", start_large),
        ("  same, first start after a new commit", start_next),
        ("  same, first start after a server restart", start_cold),
        ("exec 'true' round trip (sh.run)", exec_samples),
        ("one-shot 'true' end to end (execute)", execute_samples),
    ]
    for name, samples in rows:
        print(f"{name:<48}{median_ms(samples):>10.1f}{p90_ms(samples):>10.1f}")
    print(f"{'copy the same files (baseline, once)':<48}{copy * 1000:>10.1f}")
    print(f"ratio start large/empty: {statistics.median(start_large) / statistics.median(start_empty):.2f}")
    print(f"ratio cold start large/copy baseline: {statistics.median(start_cold) / copy:.2f}")


if __name__ == "__main__":
    main()
