"""How fast the up-front attack (``dpllnn.attack.falsify``) finds the known counterexamples.

For every instance whose refdata answer is ``sat`` (``resolved`` column, else ``consensus``) in
the given refdata csvs, runs ``falsify`` in this process with a budget of ``--budget`` seconds
and prints per benchmark how many it found and the total and median time to find them.  Compare two
versions of the attack side by side by running this script from both checkouts in turn
(``PYTHONPATH``).

    python benchmarks/bench_falsify.py ../shared/refdata/2021_oval21.csv \
        ../shared/refdata/2022_mnist_fc.csv --benchmarks-root ../shared/benchmarks --budget 5
"""
from __future__ import annotations

import argparse
import csv
import re
import statistics
import time
from pathlib import Path

import dpllnn
from dpllnn.attack import falsify


def folder_of(ref: Path, root: Path) -> Path:
    """``2021_oval21.csv`` -> ``root/vnncomp2021/oval21`` (the refdata naming)."""
    m = re.match(r"(\d{4})_(.+)\.csv$", ref.name)
    if m is None:
        raise SystemExit(f"{ref}: not a refdata file name (YEAR_benchmark.csv)")
    return root / f"vnncomp{m.group(1)}" / m.group(2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("refdata", nargs="+", type=Path)
    ap.add_argument("--benchmarks-root", required=True, type=Path)
    ap.add_argument("--budget", type=float, default=5.0, help="seconds per instance")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for ref in a.refdata:
        folder = folder_of(ref, a.benchmarks_root)
        rows = [r for r in csv.DictReader(open(ref))
                if (r.get("resolved") or r["consensus"]) == "sat"]
        nets, found, times = {}, 0, []
        for r in rows:
            onnx = folder / r["onnx"]
            if onnx not in nets:
                nets[onnx] = dpllnn.load_network(onnx)
            net = nets[onnx]
            spec = dpllnn.load_spec(folder / r["vnnlib"], net.n_inputs, net.n_outputs)
            t = time.monotonic()
            cex = falsify(net, spec, time_limit_s=a.budget, seed=a.seed)
            dt = time.monotonic() - t
            if cex is not None:
                found += 1
                times.append(dt)
            else:
                print(f"  not found: {r['onnx']} {r['vnnlib']}")
        med = statistics.median(times) if times else float("nan")
        print(f"{ref.name}: sat {len(rows)}, found {found}, total {sum(times):.2f} s, "
              f"median {med:.3f} s (budget {a.budget} s)", flush=True)


if __name__ == "__main__":
    main()
