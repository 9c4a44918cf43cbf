"""The benchmark suite's bookkeeping (bench/run.py): judging targets and writing the README section.

Nothing is timed here: the figures are made up, the point is how they are read and reported.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


@pytest.fixture(scope="module")
def suite() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


FIGURES: dict[str, Any] = {
    "http": {
        "bare": {"rps": 10000.0, "ratio": 1.0},
        "get_repo": {"rps": 7000.0, "ratio": 0.7},
        "get_object": {"rps": 4000.0, "ratio": 0.4},
        "list_objects": {"rps": 3000.0, "ratio": 0.3},
    },
    "exec": {"execute": {"p50_ms": 40.0}, "execute_polling": {"p50_ms": 1010.0}, "sh_run": {"p50_ms": 6.0}},
    "transfer": [{"case": "stream client peak RSS", "value": 40.0, "unit": "MiB", "target": 64, "met": True}],
}


def test_targets_are_judged_by_their_direction(suite: ModuleType) -> None:
    rows = {row["key"]: row for row in suite.evaluate({k: {"figures": v} for k, v in FIGURES.items()})}
    assert rows["get_repo"]["met"] is True
    assert rows["get_object"]["met"] is False
    assert rows["list_objects"]["met"] is True  # exactly on the bar counts as met
    assert rows["execute"]["met"] is True
    assert rows["execute"]["bars"] == {"ours": 40.0, "published": 1010.0}
    assert rows["sh_run"]["met"] is False
    assert rows["import"]["met"] is None  # not run: neither met nor missed
    assert rows["transfer: stream client peak RSS"]["op"] == "<="
    assert rows["transfer: stream client peak RSS"]["met"] is True


def test_the_readme_section_is_replaced_between_its_markers(
    suite: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\n## Performance\n\n{suite.START}\nold table\n{suite.END}\n\n## Plugins\n")
    monkeypatch.setattr(suite, "README", readme)
    report = {
        "generated_at": "2026-01-01 00:00 UTC",
        "quick": False,
        "machine": {"cpus": 2, "python": "3.11"},
        "targets": suite.evaluate({"http": {"figures": FIGURES["http"]}}),
    }
    suite.rewrite_readme(report)
    suite.rewrite_readme(report)  # idempotent: one section, not two
    text = readme.read_text()
    assert "old table" not in text
    assert text.count(suite.START) == 1
    assert "| GET of a 100-byte object (x the bare app's req/s) | 0.4 x | >= 0.5 | missed |" in text
    assert text.index("## Performance") < text.index(suite.START) < text.index("## Plugins")


def test_the_committed_results_are_a_valid_report(suite: ModuleType) -> None:
    report = json.loads((BENCH / "results" / "latest.json").read_text())
    assert {"generated_at", "quick", "machine", "benches", "targets"} <= set(report)
    assert {row["key"] for row in report["targets"]} >= {target.key for target in suite.TARGETS}


def test_help_runs_without_measuring() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--quick" in done.stdout
    assert "--readme" in done.stdout


def test_untargeted_ratios_are_read_and_shown_without_a_verdict(
    suite: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = {
        case: {"1": {"ratio": 1.0}, "2": {"ratio": 1.5}, "3": {"ratio": 1.8}}
        for case in ("get_repo", "get_object")
    }
    rows = suite.measured_ratios({"cluster": {"figures": cluster}, "s3": {"figures": None}})
    values = {row["label"]: row["value"] for row in rows}
    assert values["authenticated GET of a repository, 3 replicas on PostgreSQL + S3 (x 1 replica)"] == 1.8
    assert values["GET of an object, 2 replicas on PostgreSQL + S3 (x 1 replica)"] == 1.5
    assert values["upload throughput, blobs on S3 (x the local blob store)"] is None  # not run
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\n{suite.START}\n{suite.END}\n")
    monkeypatch.setattr(suite, "README", readme)
    report = {
        "generated_at": "2026-01-01 00:00 UTC",
        "quick": True,
        "machine": {"cpus": 2, "python": "3.11"},
        "targets": [],
        "ratios": rows,
    }
    suite.rewrite_readme(report)
    text = readme.read_text()
    assert "| GET of an object, 3 replicas on PostgreSQL + S3 (x 1 replica) | 1.8 x | - | no target |" in text
    assert "| upload throughput, blobs on S3 (x the local blob store) | - | - | no target |" in text
