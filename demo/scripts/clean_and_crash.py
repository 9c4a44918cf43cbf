"""Runs inside a sandbox: starts rewriting the data, then fails half-way.

Because the sandbox exits non-zero, none of these changes may reach the repository.
"""

import os
import sys

root = "/sandbox"
with open(f"{root}/raw/readings.csv", "w") as f:
    f.write("date,station_id,temperature_c\n")  # truncated: the rest was "lost"
os.remove(f"{root}/raw/stations.csv")
with open(f"{root}/summary/partial.csv", "w") as f:
    f.write("half,written\n")
print("rewrote raw/readings.csv and deleted raw/stations.csv ... then:", flush=True)
sys.exit("ValueError: unexpected sensor code 'ST99' (exit 1)")
