"""Write the instance lists of benchmarks/vnncomp/instances/ from the VNN-COMP benchmark folders.

    python benchmarks/vnncomp/make_instance_lists.py [BENCHMARKS_ROOT]

BENCHMARKS_ROOT defaults to $DPLLNN_BENCHMARKS or ../shared/benchmarks beside the repository.
Each output csv has a header ``category,onnx,vnnlib,timeout_s``; the paths are relative to
BENCHMARKS_ROOT (pass it to ``dpllnn bench --benchmarks-root``).  Every file named in a list is
checked to exist.
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITES = [("vnncomp2021", "test"), ("vnncomp2021", "acasxu"), ("vnncomp2022", "mnist_fc"),
          ("vnncomp2022", "rl_benchmarks"), ("vnncomp2022", "reach_prob_density")]


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else os.environ.get("DPLLNN_BENCHMARKS", "")
                or HERE.parent.parent.parent / "shared" / "benchmarks").resolve()
    out_dir = HERE / "instances"
    out_dir.mkdir(exist_ok=True)
    for year, name in SUITES:
        folder = root / year / name
        lists = sorted(folder.glob("*instances.csv"))
        if not lists:
            print(f"skip {folder}: no instances csv", file=sys.stderr)
            continue
        rows = []
        with open(lists[0], newline="") as fh:
            for r in csv.reader(fh):
                if len(r) < 3 or not r[0].strip():
                    continue
                onnx, vnnlib = (f"{year}/{name}/{r[i].strip()}" for i in (0, 1))
                for p in (onnx, vnnlib):
                    if not (root / p).is_file():
                        raise SystemExit(f"missing file {root / p}")
                rows.append([name, onnx, vnnlib, f"{float(r[2]):g}"])
        out = out_dir / f"{year}_{name}.csv"
        with open(out, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["category", "onnx", "vnnlib", "timeout_s"])
            w.writerows(rows)
        print(f"{out.relative_to(HERE.parent.parent)}: {len(rows)} instances")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
