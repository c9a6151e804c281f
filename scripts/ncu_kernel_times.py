#!/usr/bin/env python3
"""Summarises `ncu --csv --metrics gpu__time_duration.sum` output by kernel: launches, total and
mean GPU time, sorted by total. Used on the GPU machine to see where a training step's GPU time
goes (ncu serialises kernels, so launch gaps are not included: compare the total with the step
time to see how much of the step the host, not the GPU, takes).

Usage: python3 scripts/ncu_kernel_times.py ncu.csv [TOP]
"""
import collections
import csv
import sys


def main() -> None:
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own log lines are unquoted
    totals = collections.defaultdict(float)
    counts = collections.Counter()
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(row.get("Metric Unit", "nsecond"), 1e-3)
        name = row["Kernel Name"].split("(")[0][:90]
        totals[name] += value * scale
        counts[name] += 1
    grand = sum(totals.values())
    print(f"{sum(counts.values())} kernels, {grand:.1f} us of GPU time")
    for name, total in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{total:10.1f} us {100 * total / grand:5.1f}% {counts[name]:6d} x {total / counts[name]:8.2f} us  {name}")


if __name__ == "__main__":
    main()
