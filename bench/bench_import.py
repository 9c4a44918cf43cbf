"""Import time of ``tilde.data`` against the libraries it cannot do without (``import httpx, pluggy``).

Each sample is a fresh ``python -c`` process (interpreter start-up included, as a user sees it); the two
commands alternate so drift on the machine affects both alike, and the medians are compared.

Run: ``hatch run python bench/bench_import.py [--rounds N] [--json PATH]``. Prints the medians and the
ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"tilde.data": "import tilde.data", "httpx, pluggy": "import httpx, pluggy"}


def sample(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="samples of each command (default 10)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for code in COMMANDS.values():  # warm the page cache and the bytecode caches
        sample(code)
    for _ in range(args.rounds):
        for name, code in COMMANDS.items():
            samples[name].append(sample(code))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratio = medians["tilde.data"] / medians["httpx, pluggy"]
    for name, value in medians.items():
        print(f"python -c 'import {name}': median {value * 1000:.1f} ms of {args.rounds}")
    print(f"ratio tilde.data / (httpx, pluggy) = {ratio:.2f}x   (target <= 1.15x)")
    if args.json:
        result = {"median_ms": {k: round(v * 1000, 2) for k, v in medians.items()}, "ratio": round(ratio, 3)}
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
