"""Measure dpllnn.reduce on the ACAS Xu networks (prune, slice, verify on pruned networks).

    python benchmarks/bench_reduce.py --acas DIR [--nets 45] [--slices 16,64,256]
        [--slice-regions prop1,full] [--verify-nets 9] [--verify-timeout 60] -o out.json

Regions: ``prop1`` is prop_1.vnnlib's input box; ``full`` is the union box of the 10 ACAS Xu
properties, ``X_0 in [-0.328422877, 0.679857769]`` and ``X_1..X_4 in [-0.5, 0.5]`` (the networks'
normalised input ranges).  Prune uses a 2 s MILP budget per region; slices use the bounds-only
mode (IBP + layer-wise CROWN) and each slice is checked with ``check_equivalence`` (2 s).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np

from dpllnn.io.onnx_import import load_onnx
from dpllnn.io.vnnlib import parse_vnnlib
from dpllnn.reduce.equiv import check_equivalence
from dpllnn.reduce.prune import prune_network
from dpllnn.reduce.slice import slice_network
from dpllnn.reduce.stable import certify_stable, load_region

FULL = (np.array([-0.328422877, -0.5, -0.5, -0.5, -0.5]), np.array([0.679857769, 0.5, 0.5, 0.5, 0.5]))


def stats(v):
    v = np.asarray(v, dtype=float)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--acas", default="/work/shared/benchmarks/vnncomp2021/acasxu")
    ap.add_argument("--nets", type=int, default=45)
    ap.add_argument("--slices", default="16,64,256")
    ap.add_argument("--slice-regions", default="prop1,full")
    ap.add_argument("--slice-nets", type=int, default=45)
    ap.add_argument("--prune-budget", type=float, default=2.0)
    ap.add_argument("--verify-nets", type=int, default=0)
    ap.add_argument("--verify-timeout", type=float, default=60.0)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    nets = sorted(glob.glob(os.path.join(a.acas, "ACASXU_run2a_*_batch_2000.onnx")))[: a.nets]
    prop1 = os.path.join(a.acas, "prop_1.vnnlib")
    out = {"prune": {}, "slice": {}, "verify": []}
    rows = {"prop1": [], "full": []}
    sl = {}
    for ni, path in enumerate(nets):
        net = load_onnx(path)
        regions = {"prop1": load_region(prop1, net), "full": [FULL]}
        for rn, boxes in regions.items():
            t = time.monotonic()
            st = certify_stable(net, boxes, budget_s=a.prune_budget)
            small, rep = prune_network(net, st)
            eq = check_equivalence(net, small, boxes, timeout_s=10, phases=[st.phase] * len(boxes))
            rows[rn].append({"net": os.path.basename(path), "removed": net.n_relus - small.n_relus,
                             "time_s": time.monotonic() - t, "proved": eq.proved})
            if rn == "prop1" and ni < a.verify_nets:
                spec = parse_vnnlib(prop1, n_inputs=5, n_outputs=5)
                from dpllnn.search.verify import verify
                small.source = None
                r0 = verify(net, spec, timeout_s=a.verify_timeout, workers=1)
                import tempfile
                from dpllnn.io.onnx_export import to_onnx
                with tempfile.TemporaryDirectory() as d:
                    small.source = os.path.join(d, "p.onnx")
                    to_onnx(small, small.source, dtype="float64")
                    r1 = verify(small, spec, timeout_s=a.verify_timeout, workers=1)
                out["verify"].append({"net": os.path.basename(path), "orig": r0.verdict.value,
                                      "orig_s": r0.time_s, "pruned": r1.verdict.value,
                                      "pruned_s": r1.time_s})
            if ni >= a.slice_nets or rn not in a.slice_regions.split(","):
                continue
            for K in [int(k) for k in a.slices.split(",") if k]:
                t = time.monotonic()
                man = slice_network(net, boxes, K, None, budget_s=0.0, thorough=False,
                                    equiv_timeout_s=2.0)
                rs = [r["relus"] for r in man["regions"]]
                sl.setdefault(f"{rn}/{K}", []).append(
                    {"share_mean": float(np.mean(rs)) / net.n_relus,
                     "share_max": max(rs) / net.n_relus, "regions": len(rs),
                     "proved": sum(r["proved"] for r in man["regions"]),
                     "time_s": time.monotonic() - t})
        print(ni, os.path.basename(path), {k: v[-1] for k, v in rows.items()}, flush=True)
        for rn, rr in rows.items():
            out["prune"][rn] = {"removed": stats([r["removed"] for r in rr]),
                                "time_s": stats([r["time_s"] for r in rr]),
                                "proved": sum(r["proved"] for r in rr), "n": len(rr)}
        for key, v in sl.items():
            out["slice"][key] = {"share_mean": float(np.mean([x["share_mean"] for x in v])),
                                 "share_max_worst": float(max(x["share_max"] for x in v)),
                                 "regions": int(sum(x["regions"] for x in v)),
                                 "proved": int(sum(x["proved"] for x in v)),
                                 "time_s_mean": float(np.mean([x["time_s"] for x in v])), "n": len(v)}
        with open(a.output, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
