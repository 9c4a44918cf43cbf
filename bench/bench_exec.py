"""Command latencies through the SDK (tilde-compute) against a local tilde-server, measured side by side.

- ``sh.run("true")``: one command over a fresh /exec websocket in a running shell.
- ``repo.execute("true")``: create a one-shot sandbox, learn that it ended, read its output. The SDK learns of
  the end through the status long poll; for comparison the same flow with the published client's strategy
  (a status request at once, then one per second) is measured too.
- shell start: ``repo.shell()`` until the sandbox runs, with the long poll (``while=starting``) and with
  one-second polls.

The server runs as ``tilde-server serve`` in its own process, so client and server never share an interpreter.

Run: ``hatch run python bench/bench_exec.py [--rounds N] [--json PATH]``. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from _support import tilde_server, write_json

from tilde.compute import Client, Repository, Sandbox, SandboxStatus

#: The figures are the runtime's own costs on the host root filesystem (an image's layers are measured
#: by the image tests): every image name maps to it, in this process and the server it starts.
os.environ.setdefault("TILDE_SERVER_HOST_IMAGE", "all")


def percentile_ms(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


def measure(rounds: int, action: Callable[[], object]) -> list[float]:
    """Time ``action`` ``rounds`` times after one warm-up; an action may return the seconds that count."""
    action()  # warm up: first connections, imports, page cache
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        counted = action()
        samples.append(counted if isinstance(counted, float) else time.perf_counter() - started)
    return samples


def poll_every_second(sandbox: Sandbox, done: Callable[[SandboxStatus], bool]) -> SandboxStatus:
    """What the published client does: ask at once, then once a second."""
    while True:
        status = sandbox.status()
        if done(status):
            return status
        time.sleep(1.0)


def execute_polling(repo: Repository) -> None:
    """``repo.execute("true")`` the published client's way."""
    sandbox = repo.sandboxes.create(image="ubuntu:22.04", command=["true"])
    poll_every_second(sandbox, lambda status: status.is_terminal)
    with sandbox.status().stdout() as log:
        log.read()


def shell_start(repo: Repository, *, long_poll: bool) -> float:
    """Seconds from ``repo.shell()`` until the client knows the sandbox runs (not counting its cancel)."""
    started = time.perf_counter()
    shell = repo.shell()
    if long_poll:
        shell.wait_until_running()
    else:
        poll_every_second(shell.sandbox, lambda status: status.state != "starting")
    elapsed = time.perf_counter() - started
    shell.cancel()
    shell.sandbox.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="samples per fast measurement (default 30)")
    parser.add_argument("--slow-rounds", type=int, default=5, help="samples per 1 s-polling measurement")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-exec-") as scratch, tilde_server(Path(scratch)) as served:
        endpoint, key, _ = served
        with httpx.Client(base_url=endpoint + "/api/v1", headers={"Authorization": f"Bearer {key}"}) as api:
            api.post("/organizations", json={"name": "bench", "display_name": "Bench"}).raise_for_status()
            api.post("/organizations/bench/repositories", json={"name": "exec"}).raise_for_status()
        with Client(endpoint_url=endpoint, api_key=key) as client:
            repo = client.repository("bench/exec")
            rows: list[tuple[str, list[float]]] = []
            with repo.shell() as shell:
                rows.append(('sh.run("true")', measure(args.rounds, lambda: shell.run("true"))))
            rows.append(
                ('repo.execute("true"), long poll', measure(args.rounds, lambda: repo.execute("true")))
            )
            rows.append(
                ('repo.execute("true"), 1 s polls', measure(args.slow_rounds, lambda: execute_polling(repo)))
            )
            rows.append(
                ("shell start, long poll", measure(args.rounds, lambda: shell_start(repo, long_poll=True)))
            )
            rows.append(
                (
                    "shell start, 1 s polls",
                    measure(args.slow_rounds, lambda: shell_start(repo, long_poll=False)),
                )
            )

    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  {'n':>3}  {'p50 ms':>9}  {'p90 ms':>9}")
    for name, samples in rows:
        p50, p90 = percentile_ms(samples, 0.5), percentile_ms(samples, 0.9)
        print(f"{name:<{width}}  {len(samples):>3}  {p50:>9.1f}  {p90:>9.1f}")
    medians = [statistics.median(samples) for _, samples in rows]
    print()
    print(f"execute: 1 s polls / long poll = {medians[2] / medians[1]:.1f}x")
    print(f"shell start: 1 s polls / long poll = {medians[4] / medians[3]:.1f}x")
    keys = ["sh_run", "execute", "execute_polling", "shell_start", "shell_start_polling"]
    write_json(
        args.json,
        {
            key: {
                "p50_ms": round(percentile_ms(samples, 0.5), 2),
                "p90_ms": round(percentile_ms(samples, 0.9), 2),
                "n": len(samples),
            }
            for key, (_, samples) in zip(keys, rows, strict=True)
        },
    )


if __name__ == "__main__":
    main()
