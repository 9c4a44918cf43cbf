"""Run every benchmark in this directory, one after another, and print their tables.

Usage: ``hatch run bench [--quick]``. ``--quick`` asks each benchmark for its CI-sized run (smaller data,
fewer rounds). Benchmarks report ratios measured side by side in one run; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Each benchmark and the arguments that make it CI-sized.
QUICK_ARGS: dict[str, list[str]] = {
    "bench_authz.py": ["--rounds", "5", "--batch", "100"],
    "bench_commit_cost.py": ["--quick"],
    "bench_sandbox.py": ["--quick"],
    "bench_exec.py": ["--rounds", "10", "--slow-rounds", "2"],
    "bench_folders.py": ["--files", "1000"],
    "bench_transfer.py": ["--size", "128", "--part-size", "16"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized runs")
    parser.add_argument("only", nargs="*", help="benchmark file names to run (default: all)")
    args = parser.parse_args()
    failed = []
    for name in sorted(QUICK_ARGS):
        if args.only and name not in args.only:
            continue
        command = [sys.executable, str(HERE / name), *(QUICK_ARGS[name] if args.quick else [])]
        print(f"\n### {name} {' '.join(command[2:])}", flush=True)
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
