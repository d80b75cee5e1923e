"""Benchmark of numba's threading layers for the row-parallel bound kernels (not a test).

    .venv/bin/python benchmarks/bench_threads.py [--benchmarks-root DIR] [--layers tbb,workqueue]
                                                 [--repeat 20]

For each threading layer (each in a fresh subprocess, ``NUMBA_THREADING_LAYER`` set), prints
the cost of launching an empty parallel region, then ``compute_bounds`` ("crown") at one and at
two kernel threads (``set_kernel_threads``) on mnist_fc 256x4 prop_13_0.05: the root box with 10 %
and 50 % of the root's unstable neurons given a random phase (seed 0), recomputed from layer
0, 1 and 2 with the root as ``prev``/``outer`` -- what a CDCL node of that instance computes.
Times are means of ``--repeat`` calls after a warm-up (numba compile excluded), in ms; the
speed-up column is one thread over two, measured in the same process.  This is the measurement
behind the layer choice in ``dpllnn/bounds/threads.py``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _one_layer(root: str, repeat: int) -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numba
    import numpy as np
    from numba import njit, prange

    import dpllnn
    from dpllnn.bounds import compute_bounds, pack
    from dpllnn.bounds.threads import set_kernel_threads

    @njit(parallel=True, nogil=True)
    def empty(x, nt):
        for t in prange(nt):
            x[t] += 1.0

    set_kernel_threads(2)
    x = np.zeros(2)
    empty(x, 2)
    t0 = time.perf_counter()
    for _ in range(2000):
        empty(x, 2)
    launch_us = (time.perf_counter() - t0) / 2000 * 1e6
    print(f"layer {numba.threading_layer()}: empty parallel region {launch_us:.1f} us")
    base = Path(root) / "vnncomp2022" / "mnist_fc"
    net = dpllnn.load_network(base / "onnx" / "mnist-net_256x4.onnx")
    spec = dpllnn.load_spec(base / "vnnlib" / "prop_13_0.05.vnnlib", net.n_inputs, net.n_outputs)
    case = spec.cases[0]
    p = pack(net)
    root_b = compute_bounds(p, case.lb, case.ub, None, "crown")
    rng = np.random.default_rng(0)
    unst = np.flatnonzero((root_b.lb < 0) & (root_b.ub > 0))
    print(f"{'phases':>8} {'start':>5} {'1 thread ms':>12} {'2 threads ms':>13} {'speed-up':>9}")
    for frac in (0.1, 0.5):
        ph = np.zeros(p.n_relus, dtype=np.int8)
        pick = unst[rng.random(unst.size) < frac]
        ph[pick] = np.where(root_b.lb[pick] + root_b.ub[pick] > 0, 1, -1)
        for start in (0, 1, 2):
            ms = []
            for nt in (1, 2):
                set_kernel_threads(nt)
                compute_bounds(p, case.lb, case.ub, ph, "crown", start_layer=start, prev=root_b,
                               outer=root_b)
                t0 = time.perf_counter()
                for _ in range(repeat):
                    compute_bounds(p, case.lb, case.ub, ph, "crown", start_layer=start,
                                   prev=root_b, outer=root_b)
                ms.append((time.perf_counter() - t0) / repeat * 1e3)
            print(f"{frac:>8.0%} {start:>5} {ms[0]:>12.2f} {ms[1]:>13.2f} {ms[0] / ms[1]:>8.2f}x")
    set_kernel_threads(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--benchmarks-root", default=os.environ.get(
        "DPLLNN_BENCHMARKS", str(ROOT.parent / "shared" / "benchmarks")))
    ap.add_argument("--layers", default="tbb,workqueue")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        _one_layer(a.benchmarks_root, a.repeat)
        return 0
    if not (Path(a.benchmarks_root) / "vnncomp2022" / "mnist_fc").is_dir():
        print(f"bench_threads: no mnist_fc under {a.benchmarks_root}", file=sys.stderr)
        return 2
    rc = 0
    for layer in a.layers.split(","):
        env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
        r = subprocess.run([sys.executable, __file__, "--one", "1", "--repeat", str(a.repeat),
                            "--benchmarks-root", a.benchmarks_root], env=env)
        rc = rc or r.returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
