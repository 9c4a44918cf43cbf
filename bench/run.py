"""The benchmark suite: every performance target, measured side by side, written to bench/results/.

Usage::

    hatch run bench             # the full suite (about 10-15 minutes on a 2-core machine)
    hatch run bench --quick     # a smaller run for development (under two minutes)
    hatch run bench --readme    # only rewrite the README's performance section from latest.json
    hatch run bench http exec   # only some benchmarks (the others' figures stay as they were)

Each benchmark runs in its own process and writes JSON (``--json``); this script collects the figures into
``bench/results/latest.json``, prints every target as met or missed with its ratio, draws
``bench/results/latest.png`` (ours vs the published SDK vs the limit of each case) with matplotlib from a
separate tools environment, and rewrites the README's performance section between its markers.

Every benchmark warms up untimed and alternates what it compares, so both sides of a ratio are measured in
the same run on the same machine; nothing here asserts on time. ``bench_authz.py``, ``bench_sandbox.py``
and ``bench_http_cpu.py`` (CPU time per small request, in one process) have no targets and are run on their
own; the S3 and cluster benchmarks' ratios are printed without a target.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
LATEST = RESULTS / "latest.json"
CHART = RESULTS / "latest.png"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
#: matplotlib lives in its own environment: it is no dependency of the SDK, the server or the tests.
TOOLS = Path(tempfile.gettempdir()) / "tilde-bench-tools"


@dataclass(frozen=True)
class Bench:
    """One benchmark script and its arguments (full run, quick run)."""

    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]


BENCHES = (
    Bench(
        "http", "bench_http.py", ("--seconds", "5", "--rounds", "3"), ("--seconds", "1.5", "--rounds", "1")
    ),
    Bench(
        "exec",
        "bench_exec.py",
        ("--rounds", "30", "--slow-rounds", "3"),
        ("--rounds", "8", "--slow-rounds", "1"),
    ),
    Bench("import", "bench_import.py", ("--rounds", "10"), ("--rounds", "5")),
    Bench("commit", "bench_commit_cost.py", ("--rounds", "50"), ("--quick", "--rounds", "10")),
    Bench("folders", "bench_folders.py", ("--files", "10000"), ("--files", "200")),
    Bench("transfer", "bench_transfer.py", (), ("--size", "32", "--rounds", "1", "--part-size", "16")),
    Bench("image_start", "bench_image_start.py", ("--rounds", "20"), ("--rounds", "5")),
    Bench(
        "images",
        "bench_images.py",
        ("--layers", "4", "--layer-mib", "32", "--rounds", "3"),
        ("--layers", "4", "--layer-mib", "8", "--rounds", "1"),
    ),
    Bench("s3", "bench_s3.py", ("--size", "256", "--rounds", "3"), ("--size", "32", "--rounds", "1")),
    Bench(
        "cluster",
        "bench_cluster.py",
        ("--seconds", "5", "--rounds", "3"),
        ("--seconds", "1.5", "--rounds", "1"),
    ),
)


@dataclass(frozen=True)
class Target:
    """A target of the suite: how to read the measured value from the figures, and the bar to meet."""

    key: str
    label: str
    bench: str
    unit: str
    op: str  # ">=" or "<="
    limit: float
    value: Callable[[dict[str, Any]], float]
    bars: Callable[[dict[str, Any]], dict[str, float]]


def _http(case: str) -> Callable[[dict[str, Any]], float]:
    return lambda figures: float(figures[case]["ratio"])


def _http_bars(case: str) -> Callable[[dict[str, Any]], dict[str, float]]:
    return lambda figures: {"ours": figures[case]["rps"], "limit": figures["bare"]["rps"]}


TARGETS = (
    Target(
        "get_repo",
        "authenticated GET of a repository (x the bare app's req/s)",
        "http",
        "x",
        ">=",
        0.6,
        _http("get_repo"),
        _http_bars("get_repo"),
    ),
    Target(
        "get_object",
        "GET of a 100-byte object (x the bare app's req/s)",
        "http",
        "x",
        ">=",
        0.5,
        _http("get_object"),
        _http_bars("get_object"),
    ),
    Target(
        "list_objects",
        "list 100 objects (x the bare app's req/s)",
        "http",
        "x",
        ">=",
        0.3,
        _http("list_objects"),
        _http_bars("list_objects"),
    ),
    Target(
        "execute",
        'repo.execute("true") p50 (ms)',
        "exec",
        "ms",
        "<=",
        50,
        lambda f: float(f["execute"]["p50_ms"]),
        lambda f: {"ours": f["execute"]["p50_ms"], "published": f["execute_polling"]["p50_ms"]},
    ),
    Target(
        "sh_run",
        'sh.run("true") p50 in a running shell (ms)',
        "exec",
        "ms",
        "<=",
        5,
        lambda f: float(f["sh_run"]["p50_ms"]),
        lambda f: {"ours": f["sh_run"]["p50_ms"]},
    ),
    Target(
        "import",
        'python -c "import tilde.data" (x import httpx, pluggy)',
        "import",
        "x",
        "<=",
        1.15,
        lambda f: float(f["ratio"]),
        lambda f: {"ours": f["median_ms"]["tilde.data"], "limit": f["median_ms"]["httpx, pluggy"]},
    ),
    Target(
        "commit",
        "one-path commit, large repository (x the 100-object one)",
        "commit",
        "x",
        "<=",
        1.05,
        lambda f: float(f["ratio"]),
        lambda f: {"ours": f["commit_large_ms"], "limit": f["commit_small_ms"]},
    ),
    Target(
        "folder_upload",
        "folder upload of small files (x the published SDK's speed)",
        "folders",
        "x",
        ">=",
        10,
        lambda f: float(f["upload_ratio"]),
        lambda f: {
            "ours": f["seconds"]["upload, ours (batched)"],
            "published": f["seconds"]["upload, published 0.7.9 put loop"],
        },
    ),
    Target(
        "folder_download",
        "folder download of small files (x the published SDK's speed)",
        "folders",
        "x",
        ">=",
        5,
        lambda f: float(f["download_ratio"]),
        lambda f: {
            "ours": f["seconds"]["download, ours"],
            "published": f["seconds"]["download, published 0.7.9 get loop"],
        },
    ),
    Target(
        "image_start",
        'repo.execute("true") on a cached image, beyond a host-root start (ms)',
        "image_start",
        "ms",
        "<=",
        100,
        lambda f: float(f["extra_ms"]),
        lambda f: {"ours": f["image"]["p50_ms"], "limit": f["host"]["p50_ms"] + 100},
    ),
    Target(
        "image_pull",
        "image pull with unpacking, MiB/s (x skopeo copy + umoci unpack of the same image)",
        "images",
        "x",
        ">=",
        0.8,
        lambda f: float(f["ratio_vs_skopeo_umoci"]),
        lambda f: {"ours": f["mib_per_s"]["store"], "limit": f["mib_per_s"]["skopeo+umoci"]},
    ),
)


#: Ratios the suite reports without a target: (label, benchmark, how to read it from the figures).
RATIOS: tuple[tuple[str, str, Callable[[dict[str, Any]], float]], ...] = (
    ("upload throughput, blobs on S3 (x the local blob store)", "s3", lambda f: float(f["ratio"])),
    *(
        (
            f"{label}, {count} replicas on PostgreSQL + S3 (x 1 replica)",
            "cluster",
            lambda f, case=case, count=count: float(f[case][count]["ratio"]),
        )
        for case, label in (
            ("get_repo", "authenticated GET of a repository"),
            ("get_object", "GET of an object"),
        )
        for count in ("2", "3")
    ),
)


def measured_ratios(benches: dict[str, Any]) -> list[dict[str, Any]]:
    """The untargeted ratios with their measured values (None: not measured)."""
    rows = []
    for label, bench, read in RATIOS:
        figures = benches.get(bench, {}).get("figures")
        try:
            value: float | None = round(read(figures), 3) if figures else None
        except (KeyError, TypeError, ValueError):
            value = None
        rows.append({"label": label, "bench": bench, "value": value})
    return rows


def run_bench(bench: Bench, quick: bool) -> dict[str, Any] | None:
    """Run one benchmark in its own process; return its JSON figures (None when it failed)."""
    script = HERE / bench.script
    with tempfile.TemporaryDirectory(prefix="bench-run-") as scratch:
        out = Path(scratch) / "figures.json"
        command = [sys.executable, str(script), *(bench.quick if quick else bench.full)]
        print(f"\n### {bench.name}: {' '.join(command[1:])}", flush=True)
        usage = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
        if "--json" not in usage.stdout:
            print(f"{bench.name} writes no JSON yet: its table above is all there is", file=sys.stderr)
            subprocess.run(command, check=False, cwd=ROOT)
            return None
        command += ["--json", str(out)]
        started = time.monotonic()
        done = subprocess.run(command, check=False, cwd=ROOT)
        print(f"({bench.name}: {time.monotonic() - started:.0f} s)", flush=True)
        if done.returncode != 0 or not out.exists():
            print(f"{bench.name} failed (exit {done.returncode})", file=sys.stderr)
            return None
        figures: dict[str, Any] = json.loads(out.read_text())
        return figures


def evaluate(benches: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it is met (None: not measured)."""
    rows = []
    for target in TARGETS:
        figures = benches.get(target.bench, {}).get("figures")
        row: dict[str, Any] = {
            "key": target.key,
            "label": target.label,
            "unit": target.unit,
            "op": target.op,
            "target": target.limit,
            "value": None,
            "met": None,
            "bars": {},
        }
        if figures:
            try:
                value = target.value(figures)
                row["bars"] = {k: float(v) for k, v in target.bars(figures).items()}
            except (KeyError, TypeError, ValueError):
                value = None
            if value is not None:
                row["value"] = round(value, 3)
                row["met"] = value >= target.limit if target.op == ">=" else value <= target.limit
        rows.append(row)
    # bench_transfer.py judges its own targets: a list of {case, value, unit, target, met}.
    for check in benches.get("transfer", {}).get("figures") or []:
        rows.append(
            {
                "key": "transfer: " + check["case"],
                "label": f"transfer: {check['case']} ({check['unit']})",
                "unit": check["unit"],
                "op": "<=" if check["unit"] == "MiB" else ">=",
                "target": check["target"],
                "value": check["value"],
                "met": check["met"],
                "bars": {"ours": check["value"]},
            }
        )
    return rows


def print_targets(rows: list[dict[str, Any]]) -> None:
    print("\n## targets")
    for row in rows:
        if row["value"] is None:
            verdict, shown = "not measured", "-"
        else:
            verdict = "met" if row["met"] else "MISSED"
            shown = f"{row['value']:g} {row['unit']}"
        print(f"{verdict:>12}  {shown:>12}  (target {row['op']} {row['target']:g})  {row['label']}")


def print_ratios(rows: list[dict[str, Any]]) -> None:
    print("\n## ratios (no target)")
    for row in rows:
        shown = "not measured" if row["value"] is None else f"{row['value']:g} x"
        print(f"{shown:>12}  {row['label']}")


def readme_section(report: dict[str, Any]) -> str:
    """The README's performance section body: the table of targets and the chart."""
    lines = [
        START,
        "",
        f"{'Quick run' if report['quick'] else 'Full run'} of {report['generated_at']} on "
        f"{report['machine']['cpus']} CPUs, Python {report['machine']['python']}.",
        "Regenerate with `hatch run bench` (`--quick`: a short run; `--readme`: rewrite this section only).",
        "",
        "| case | measured | target | |",
        "|---|---|---|---|",
    ]
    for row in report["targets"]:
        measured = "-" if row["value"] is None else f"{row['value']:g} {row['unit']}"
        verdict = "not measured" if row["met"] is None else "met" if row["met"] else "missed"
        lines.append(f"| {row['label']} | {measured} | {row['op']} {row['target']:g} | {verdict} |")
    for row in report.get("ratios", []):
        measured = "-" if row["value"] is None else f"{row['value']:g} x"
        lines.append(f"| {row['label']} | {measured} | - | no target |")
    lines += [
        "",
        "![Benchmark results: ours, the published SDK and the limits](bench/results/latest.png)",
        "",
    ]
    lines.append(END)
    return "\n".join(lines)


def rewrite_readme(report: dict[str, Any]) -> None:
    """Replace the README's section between the markers (or add a Performance section before Plugins)."""
    text = README.read_text()
    section = readme_section(report)
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        block = f"## Performance\n\n{section}\n\n"
        marker = "## Plugins"
        text = text.replace(marker, block + marker, 1) if marker in text else text + "\n" + block
    README.write_text(text)
    print(f"rewrote the performance section of {README.name}")


def tools_python() -> Path | None:
    """An interpreter with matplotlib (a cached virtual environment); None when it cannot be made."""
    python = TOOLS / "bin" / "python"
    if (TOOLS / ".ready").exists():
        return python
    try:
        venv.create(TOOLS, with_pip=True, clear=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "matplotlib>=3.7"]
        subprocess.run(pip, check=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"no chart: matplotlib could not be installed ({error})", file=sys.stderr)
        return None
    (TOOLS / ".ready").touch()
    return python


def draw_chart(report_path: Path, chart_path: Path) -> None:
    python = tools_python()
    if python is None:
        return
    done = subprocess.run(
        [str(python), str(HERE / "chart.py"), str(report_path), str(chart_path)], check=False
    )
    if done.returncode == 0:
        print(f"chart: {chart_path.relative_to(ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under two minutes)")
    parser.add_argument("--readme", action="store_true", help="only rewrite the README from latest.json")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument("--output", type=Path, default=LATEST, help="where the JSON report goes")
    parser.add_argument(
        "only", nargs="*", help=f"benchmarks to run (default all: {[b.name for b in BENCHES]})"
    )
    args = parser.parse_args()
    if args.readme:
        rewrite_readme(json.loads(LATEST.read_text()))
        return 0
    unknown = set(args.only) - {bench.name for bench in BENCHES}
    if unknown:
        parser.error(f"unknown benchmarks: {sorted(unknown)}")
    previous: dict[str, Any] = {}
    if args.only and args.output.exists():
        previous = json.loads(args.output.read_text()).get("benches", {})
    started = time.monotonic()
    benches: dict[str, Any] = dict(previous)
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        figures = run_bench(bench, args.quick)
        benches[bench.name] = {"figures": figures, "quick": args.quick}
    report = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.system()},
        "benches": benches,
        "targets": evaluate(benches),
        "ratios": measured_ratios(benches),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_targets(report["targets"])
    print_ratios(report["ratios"])
    print(f"\nwrote {args.output} in {report['seconds']:.0f} s")
    if args.output == LATEST:
        if not args.no_chart:
            draw_chart(args.output, CHART)
        rewrite_readme(report)
    failed = [name for name, entry in benches.items() if entry.get("figures") is None]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
