"""Import time of ``tilde.data`` against the libraries it cannot do without (``import httpx, pluggy``).

Each sample is a fresh ``python -c`` process (interpreter start-up included, as a user sees it); the two
commands alternate so drift on the machine affects both alike, and the medians are compared. The ratio is
taken on the processes' CPU time (user + system, from ``wait4``), which a busy machine disturbs far less than
wall time; on a quiet machine the two agree. Wall-time medians are printed too. The samples run without
``PYTHONDONTWRITEBYTECODE``, so the warm-up leaves bytecode caches behind and every sample measures the import
a user sees, not the compilation of sources edited since their cache was written.

Run: ``hatch run python bench/bench_import.py [--rounds N] [--json PATH]``. Prints the medians and the
ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"tilde.data": "import tilde.data", "httpx, pluggy": "import httpx, pluggy"}

#: The samples' environment: bytecode caches may be written (the warm-up writes them).
ENVIRON = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def sample(code: str) -> tuple[float, float]:
    """Run ``python -c code``; return its (CPU seconds, wall seconds)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], env=ENVIRON)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"python -c {code!r} failed")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="samples of each command (default 10)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    wall: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for code in COMMANDS.values():  # warm the page cache and the bytecode caches
        sample(code)
    for _ in range(args.rounds):
        for name, code in COMMANDS.items():
            used, elapsed = sample(code)
            cpu[name].append(used)
            wall[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in cpu.items()}
    wall_medians = {name: statistics.median(values) for name, values in wall.items()}
    ratio = medians["tilde.data"] / medians["httpx, pluggy"]
    for name, value in medians.items():
        print(
            f"python -c 'import {name}': median CPU {value * 1000:.1f} ms, "
            f"wall {wall_medians[name] * 1000:.1f} ms, of {args.rounds}"
        )
    print(f"ratio tilde.data / (httpx, pluggy), CPU time = {ratio:.2f}x   (target <= 1.15x)")
    print(f"the same on wall time = {wall_medians['tilde.data'] / wall_medians['httpx, pluggy']:.2f}x")
    if args.json:
        result = {
            "median_ms": {k: round(v * 1000, 2) for k, v in medians.items()},
            "wall_median_ms": {k: round(v * 1000, 2) for k, v in wall_medians.items()},
            "ratio": round(ratio, 3),
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
