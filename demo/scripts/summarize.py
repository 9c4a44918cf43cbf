"""Runs inside a sandbox: turn raw readings into per-station daily means.

Reads /sandbox/raw/readings.csv and /sandbox/raw/stations.csv, writes /sandbox/summary/daily_means.csv and
/sandbox/summary/report.txt, and removes the scratch file the upload left behind.
"""

import csv
import os
import statistics
from collections import defaultdict

root = "/sandbox"
names = {}
with open(f"{root}/raw/stations.csv", newline="") as f:
    for row in csv.DictReader(f):
        names[row["station_id"]] = row["name"]

by_day = defaultdict(list)
with open(f"{root}/raw/readings.csv", newline="") as f:
    for row in csv.DictReader(f):
        by_day[(row["date"], row["station_id"])].append(float(row["temperature_c"]))

os.makedirs(f"{root}/summary", exist_ok=True)
with open(f"{root}/summary/daily_means.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["date", "station", "mean_c", "samples"])
    for (day, sid), values in sorted(by_day.items()):
        writer.writerow([day, names[sid], f"{statistics.fmean(values):.2f}", len(values)])

warmest = max(by_day.items(), key=lambda item: statistics.fmean(item[1]))
with open(f"{root}/summary/report.txt", "w") as f:
    f.write(f"{len(by_day)} station-days summarised\n")
    f.write(f"warmest: {names[warmest[0][1]]} on {warmest[0][0]}\n")

if os.path.exists(f"{root}/raw/upload.tmp"):
    os.remove(f"{root}/raw/upload.tmp")
print(f"wrote {len(by_day)} rows to summary/daily_means.csv")
