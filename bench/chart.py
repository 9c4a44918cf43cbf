"""Draw bench/results/latest.png from latest.json: one panel per target, ours vs published vs the limit.

Run by ``bench/run.py`` with an interpreter that has matplotlib (a tools environment of its own):
``python bench/chart.py REPORT.json OUT.png``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {"ours": "#2b6cb0", "published": "#dd6b20", "limit": "#718096"}
#: What the bars of each target measure (the transfer targets plot their own value and unit).
BAR_UNITS = {
    "get_repo": "req/s",
    "get_object": "req/s",
    "list_objects": "req/s",
    "execute": "ms",
    "sh_run": "ms",
    "import": "CPU ms",
    "commit": "ms",
    "folder_upload": "seconds (less is faster)",
    "folder_download": "seconds (less is faster)",
}
NAMES = {"ours": "ours", "published": "published SDK 0.7.9", "limit": "limit / reference"}


def main() -> None:
    report = json.loads(Path(sys.argv[1]).read_text())
    rows = [row for row in report["targets"] if row.get("bars")]
    columns = 3
    lines = max(1, math.ceil(len(rows) / columns))
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.0 * lines), squeeze=False)
    for axis in axes.flat[len(rows) :]:
        axis.axis("off")
    for axis, row in zip(axes.flat, rows, strict=False):
        names = [name for name in ("ours", "published", "limit") if name in row["bars"]]
        values = [row["bars"][name] for name in names]
        axis.bar([NAMES[n] for n in names], values, color=[COLOURS[n] for n in names])
        verdict = "not measured" if row["met"] is None else "met" if row["met"] else "missed"
        value = "-" if row["value"] is None else f"{row['value']:g} {row['unit']}"
        axis.set_title(
            f"{row['label']}\n{value} (target {row['op']} {row['target']:g}): {verdict}", fontsize=8
        )
        axis.set_ylabel(BAR_UNITS.get(row["key"], row["unit"]), fontsize=7)
        axis.tick_params(axis="x", labelsize=7)
        axis.tick_params(axis="y", labelsize=7)
        # The target as a line: on the limit's scale when the target is a ratio to a limit bar.
        line = row["target"] * row["bars"]["limit"] if row["unit"] == "x" and "limit" in row["bars"] else None
        if line is None and (row["unit"] != "x" or set(row["bars"]) == {"ours"}):
            line = row["target"]
        if line is not None:
            axis.axhline(line, color="#c53030", linestyle="--", linewidth=1)
    title = f"tilde benchmarks, {report['generated_at']}" + (" (quick run)" if report["quick"] else "")
    figure.suptitle(title + " - dashed line: the target", fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
