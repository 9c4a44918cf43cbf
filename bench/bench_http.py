"""Small-request throughput of tilde-server against a bare Starlette app under the same uvicorn + httptools.

Both servers run as ``tilde-server serve`` would (their own processes, uvicorn with httptools and its access
log), and a raw keep-alive load generator (`loadgen.py`, 16 connections, no pipelining) in a third process
loads one at a time. Cases, each as requests per second and as a ratio to the bare app measured in the same
round:

- ``bare``: the bare app's ``GET /`` (a small JSON body): the floor of a Python HTTP server here;
- ``get_repo``: an authenticated ``GET`` of a repository;
- ``get_object``: an authenticated ``GET`` of a 100-byte object;
- ``list_objects``: an authenticated ``GET`` listing 100 objects.

Rounds alternate the cases so drift on the machine affects them alike; medians are reported.

Run: ``hatch run python bench/bench_http.py [--seconds S] [--rounds N] [--json PATH]``. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from _support import free_port, serving, tilde_server

HERE = Path(__file__).resolve().parent

BARE_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def home(request):
    return JSONResponse({"id": "r1", "name": "perf", "visibility": "private"})

app = Starlette(routes=[Route("/", home)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="asyncio", log_level="info")
"""


def load(url: str, seconds: float, headers: list[str], connections: int = 16) -> dict[str, Any]:
    """Run the load generator in its own process and return its JSON figures."""
    command = [sys.executable, str(HERE / "loadgen.py"), url, "--seconds", str(seconds)]
    command += ["--connections", str(connections), "--warmup", str(min(1.0, seconds / 3))]
    for header in headers:
        command += ["--header", header]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, timeout=seconds + 60)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def prepare(endpoint: str, key: str) -> None:
    """Create ``bench/perf`` with a 100-byte object and 100 objects under ``list/``."""
    from tilde.data import Client

    with httpx.Client(
        base_url=endpoint + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as api:
        api.post("/organizations", json={"name": "bench"}).raise_for_status()
        api.post("/organizations/bench/repositories", json={"name": "perf"}).raise_for_status()
    with (
        Client(endpoint_url=endpoint, api_key=key) as client,
        client.repository("bench/perf").session() as session,
    ):
        session.objects.put("small.bin", b"s" * 100)
        for index in range(100):
            session.objects.put(f"list/{index:03d}.txt", b"x" * 100)
        session.commit("bench data")


def flame_graphs(py_spy: str, pid: int, cases: dict[str, tuple[str, list[str]]], out: Path, tag: str) -> None:
    """Record a py-spy flame graph (SVG) of the tilde-server process under each case's load."""
    out.mkdir(parents=True, exist_ok=True)
    for name, (url, headers) in cases.items():
        if name == "bare":
            continue
        svg = out / f"flame-{name}-{tag}.svg"
        recorder = subprocess.Popen(
            [
                *(py_spy, "record", "--pid", str(pid), "--duration", "4", "--rate", "250", "--nonblocking"),
                *("--format", "flamegraph", "--output", str(svg)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        load(url, 5.0, headers)
        recorder.wait(timeout=60)
        # py-spy writes its command line into the graph: keep this machine's paths out of it.
        text = svg.read_text().replace(str(svg), svg.name).replace(py_spy, "py-spy")
        svg.write_text(text)
        print(f"flame graph: {svg}")


def measure(
    seconds: float, rounds: int, py_spy: str | None = None, flame_dir: Path | None = None, tag: str = ""
) -> dict[str, Any]:
    """Run every case ``rounds`` times, alternating, and return medians and ratios."""
    bare_port = free_port()
    bare_url = f"http://127.0.0.1:{bare_port}/"
    samples: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as scratch:
        bare_command = [sys.executable, "-c", BARE_APP, str(bare_port)]
        with (
            serving(bare_command, bare_url),
            tilde_server(Path(scratch) / "server") as (endpoint, key, tilde_process),
        ):
            prepare(endpoint, key)
            auth = [f"Authorization: Bearer {key}"]
            base = f"{endpoint}/api/v1/organizations/bench/repositories/perf"
            cases = {
                "bare": (bare_url, []),
                "get_repo": (base, auth),
                "get_object": (base + "/object?path=small.bin", auth),
                "list_objects": (base + "/objects?prefix=list/&amount=100", auth),
            }
            for url, headers in cases.values():  # untimed warm-up
                load(url, 1.0, headers)
            if py_spy and flame_dir:
                flame_graphs(py_spy, tilde_process.pid, cases, flame_dir, tag)
                return {}
            for _ in range(rounds):
                for name, (url, headers) in cases.items():
                    samples.setdefault(name, []).append(load(url, seconds, headers))
    result: dict[str, Any] = {}
    bare = statistics.median(sample["rps"] for sample in samples["bare"])
    for name, runs in samples.items():
        rps = statistics.median(sample["rps"] for sample in runs)
        result[name] = {
            "rps": round(rps, 1),
            "ratio": round(rps / bare, 3),
            "p50_ms": statistics.median(sample["p50_ms"] for sample in runs),
            "errors": sum(sample["errors"] for sample in runs),
            "rounds": len(runs),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--py-spy", help="a py-spy executable: record flame graphs instead of measuring")
    parser.add_argument("--flame-dir", type=Path, default=HERE / "results", help="where flame graphs go")
    parser.add_argument("--tag", default="after", help="flame graph file name suffix (before/after)")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if args.py_spy:
        measure(args.seconds, args.rounds, args.py_spy, args.flame_dir, args.tag)
        return
    result = measure(args.seconds, args.rounds)
    print(f"{'case':14} {'req/s':>9} {'x bare':>7} {'p50 ms':>8} {'errors':>7}")
    for name, row in result.items():
        print(f"{name:14} {row['rps']:9.0f} {row['ratio']:7.2f} {row['p50_ms']:8.2f} {row['errors']:7d}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
