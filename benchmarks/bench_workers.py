"""Speed-up of ``dpllnn verify --workers 2`` over ``--workers 1`` (issue 5), measured in one run.

Takes the N slowest instances that a previous ``dpllnn bench`` results csv decided, runs each with
1 and with 2 workers (fresh process each, same timeout), and prints per-instance times, verdicts,
peak memory (``memory_peak_mb`` from the run's stats: the process and its workers) and the ratio of
the totals over the instances both runs decide.

    python benchmarks/bench_workers.py RESULTS.csv --benchmarks-root ../shared/benchmarks -n 10 --timeout 60
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path


def run(onnx, vnnlib, workers, timeout):
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "dpllnn.cli", "verify", str(onnx), str(vnnlib),
                        "--workers", str(workers), "--timeout", str(timeout), "--json"],
                       capture_output=True, text=True, timeout=timeout + 60)
    wall = time.monotonic() - t0
    obj = json.loads(p.stdout) if p.returncode == 0 else {"result": f"error {p.returncode}",
                                                           "stats": {}}
    return obj["result"], wall, obj["stats"].get("memory_peak_mb")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="a dpllnn bench results csv")
    ap.add_argument("--benchmarks-root", required=True)
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args(argv)
    rows = [r for r in csv.DictReader(open(a.results)) if r["result"] in ("sat", "unsat")]
    rows.sort(key=lambda r: -float(r["time_s"]))
    root = Path(a.benchmarks_root)
    tot1 = tot2 = 0.0
    print(f"{'instance':48s} {'w1':>12s} {'w2':>12s} {'ratio':>6s} {'peak MB w1/w2':>14s}")
    for r in rows[:a.n]:
        v1, t1, m1 = run(root / r["onnx"], root / r["vnnlib"], 1, a.timeout)
        v2, t2, m2 = run(root / r["onnx"], root / r["vnnlib"], 2, a.timeout)
        name = f"{Path(r['onnx']).stem[-20:]} {Path(r['vnnlib']).stem}"
        both = v1 in ("sat", "unsat") and v2 in ("sat", "unsat")
        if both:
            tot1, tot2 = tot1 + t1, tot2 + t2
        print(f"{name:48s} {v1:>6s} {t1:5.1f} {v2:>6s} {t2:5.1f} {t1 / t2:6.2f} "
              f"{m1 or 0:6.0f}/{m2 or 0:<6.0f}")
    print(f"total over instances both decide: 1 worker {tot1:.1f} s, 2 workers {tot2:.1f} s, "
          f"speed-up {tot1 / tot2 if tot2 else float('nan'):.2f}x")


if __name__ == "__main__":
    main()
