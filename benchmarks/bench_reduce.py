"""Measure dpllnn.reduce on the ACAS Xu networks (prune, slice, verify on pruned networks).

    python benchmarks/bench_reduce.py --acas DIR [--nets 45] [--every 1] [--regions prop1,full]
        [--slices 16,64,256] [--slice-regions prop1,full] [--verify-nets 9] [--verify-timeout 30]
        -o OUT_DIR

The 45-network measurement of issue #6 is meant as two passes: ``--regions prop1 --verify-nets 9``
on all 45 networks (~30 min on one core; run in session 2, 256 regions reached 11 networks), then
``--regions full --slices 16,64 --every 5`` (9 networks: big boxes make every slice's equivalence
check slow; not run yet).

Regions: ``prop1`` is prop_1.vnnlib's input box; ``full`` is the union box of the 10 ACAS Xu
properties, ``X_0 in [-0.328422877, 0.679857769]`` and ``X_1..X_4 in [-0.5, 0.5]`` (the networks'
normalised input ranges).

Settings (chosen from timing 2 networks):

* prune: stable sets certified on ``--prune-refine`` (256) sub-boxes (IBP + layer-wise CROWN per
  sub-box, a 2 s MILP budget in all; a neuron is stable when it is, with one sign, on every
  sub-box); the plain certification (one box, IBP + CROWN + alpha-CROWN + PGD + 2 s MILP) is also
  recorded as ``relus_plain`` for comparison;
  equivalence of the pruned network proved on the region with the certified phases, 5 s.
* slice, 16 and 64 regions: bounds-only per slice (IBP + layer-wise CROWN, no MILP) with
  ``refine=16`` sub-boxes; on ``prop1`` at 64 regions (the issue's target: every slice at most half
  of the ReLUs) adaptive refinement: a slice still above half is re-certified with 4x the
  sub-boxes, up to 256.  Equivalence per slice, 2 s.
* slice, 256 regions, and every slicing of ``full``: bounds-only, no refinement (the cheap mode),
  equivalence 0.5 s per slice.
* verify: ``verify(prop_1)`` on the original and the prop1-pruned network (float64 ONNX) of the
  first ``--verify-nets`` networks, ``--verify-timeout`` each, one worker.

Results: one ``OUT_DIR/nets/<net>.json`` per network (written as soon as the network is done; a
rerun skips networks already there, so the script is resumable) and ``OUT_DIR/summary.json``,
the aggregate over the networks done so far.  Progress is printed (one line per step).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
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
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())} if v.size else {}


def slice_settings(region: str, K: int) -> dict:
    """slice_network keyword arguments for a region name and a number of regions (see docstring)."""
    if K >= 256 or region == "full":
        return {"refine": 1, "equiv_timeout_s": 0.5}
    kw = {"refine": 16, "equiv_timeout_s": 2.0}
    if region == "prop1" and K == 64:
        kw.update(refine_until=0.5, refine_max=256)
    return kw


def run_net(path, prop1, a, do_verify, log):
    net = load_onnx(path)
    name = os.path.basename(path)
    res = {"net": name, "relus": net.n_relus, "prune": {}, "slice": {}, "verify": None}
    regions = {"prop1": load_region(prop1, net), "full": [FULL]}
    regions = {k: v for k, v in regions.items() if k in a.regions.split(",")}
    for rn, boxes in regions.items():
        t = time.monotonic()
        st = certify_stable(net, boxes, budget_s=a.prune_budget, refine=a.prune_refine,
                            use_alpha=False, use_pgd=False, n_samples=16)
        small, rep = prune_network(net, st)
        t_prune = time.monotonic() - t
        eq = check_equivalence(net, small, boxes, timeout_s=a.prune_equiv_timeout, phases=[st.phase] * len(boxes))
        plain = prune_network(net, certify_stable(net, boxes, budget_s=a.prune_budget))[0]
        res["prune"][rn] = {"removed": net.n_relus - small.n_relus, "relus": small.n_relus,
                            "relus_plain": plain.n_relus, "prune_s": t_prune,
                            "time_s": time.monotonic() - t, "proved": eq.proved,
                            "equiv_how": eq.how, "equiv_s": eq.time_s, "steps": rep.steps}
        log(f"{name} prune {rn}: {net.n_relus} -> {small.n_relus} ReLUs (plain {plain.n_relus}), "
            f"{t_prune:.1f} s, equiv {eq.verdict} by {eq.how} {eq.time_s:.1f} s")
        if rn == "prop1" and do_verify:
            from dpllnn.io.onnx_export import to_onnx
            from dpllnn.search.verify import verify
            spec = parse_vnnlib(prop1, n_inputs=5, n_outputs=5)
            r0 = verify(net, spec, timeout_s=a.verify_timeout, workers=1)
            with tempfile.TemporaryDirectory() as d:
                small.source = os.path.join(d, "p.onnx")
                to_onnx(small, small.source, dtype="float64")
                r1 = verify(small, spec, timeout_s=a.verify_timeout, workers=1)
                small.source = None
            res["verify"] = {"orig": r0.verdict.value, "orig_s": r0.time_s,
                             "pruned": r1.verdict.value, "pruned_s": r1.time_s}
            log(f"{name} verify prop_1: original {r0.verdict.value} {r0.time_s:.2f} s, "
                f"pruned {r1.verdict.value} {r1.time_s:.2f} s")
        if rn not in a.slice_regions.split(","):
            continue
        for K in [int(k) for k in a.slices.split(",") if k]:
            t = time.monotonic()
            kw = slice_settings(rn, K)
            man = slice_network(net, boxes, K, None, budget_s=0.0, thorough=False, **kw)
            rs = [r["relus"] for r in man["regions"]]
            d = {"share_mean": float(np.mean(rs)) / net.n_relus,
                 "share_max": max(rs) / net.n_relus, "regions": len(rs),
                 "proved": int(sum(r["proved"] for r in man["regions"])),
                 "refine_max_used": int(max(r["refine"] for r in man["regions"])),
                 "time_s": time.monotonic() - t, "settings": kw}
            res["slice"][f"{rn}/{K}"] = d
            log(f"{name} slice {rn}/{K}: mean {100 * d['share_mean']:.1f}%, worst "
                f"{100 * d['share_max']:.1f}%, proved {d['proved']}/{len(rs)}, {d['time_s']:.1f} s")
    return res


def summarise(per_net: list) -> dict:
    out = {"n": len(per_net), "prune": {}, "slice": {}, "verify": []}
    for rn in ("prop1", "full"):
        rr = [r["prune"][rn] for r in per_net if rn in r["prune"]]
        if rr:
            out["prune"][rn] = {"removed": stats([x["removed"] for x in rr]),
                                "removed_plain": stats([300 - x["relus_plain"] for x in rr]),
                                "time_s": stats([x["time_s"] for x in rr]),
                                "proved": sum(x["proved"] for x in rr), "n": len(rr)}
    keys = sorted({k for r in per_net for k in r["slice"]})
    for key in keys:
        v = [r["slice"][key] for r in per_net if key in r["slice"]]
        out["slice"][key] = {"share_mean": float(np.mean([x["share_mean"] for x in v])),
                             "share_max_worst": float(max(x["share_max"] for x in v)),
                             "nets_worst_over_half": int(sum(x["share_max"] > 0.5 for x in v)),
                             "regions": int(sum(x["regions"] for x in v)),
                             "proved": int(sum(x["proved"] for x in v)),
                             "time_s_mean": float(np.mean([x["time_s"] for x in v])), "n": len(v)}
    vv = [dict(net=r["net"], **r["verify"]) for r in per_net if r.get("verify")]
    out["verify"] = vv
    if vv:
        out["verify_total"] = {"orig_s": sum(x["orig_s"] for x in vv),
                               "pruned_s": sum(x["pruned_s"] for x in vv)}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--acas", default="/work/shared/benchmarks/vnncomp2021/acasxu")
    ap.add_argument("--nets", type=int, default=45)
    ap.add_argument("--slices", default="16,64,256")
    ap.add_argument("--regions", default="prop1,full", help="regions to measure at all")
    ap.add_argument("--slice-regions", default="prop1,full")
    ap.add_argument("--every", type=int, default=1, help="take every k-th network (sorted)")
    ap.add_argument("--prune-equiv-timeout", type=float, default=5.0)
    ap.add_argument("--prune-budget", type=float, default=2.0)
    ap.add_argument("--prune-refine", type=int, default=256)
    ap.add_argument("--verify-nets", type=int, default=0)
    ap.add_argument("--verify-timeout", type=float, default=30.0)
    ap.add_argument("-o", "--output", required=True, help="output directory")
    a = ap.parse_args()
    nets = sorted(glob.glob(os.path.join(a.acas, "ACASXU_run2a_*_batch_2000.onnx")))[:: a.every][: a.nets]
    prop1 = os.path.join(a.acas, "prop_1.vnnlib")
    os.makedirs(os.path.join(a.output, "nets"), exist_ok=True)
    t0 = time.monotonic()

    def log(msg):
        print(f"[{time.monotonic() - t0:7.1f} s] {msg}", flush=True)

    per_net = []
    for ni, path in enumerate(nets):
        fn = os.path.join(a.output, "nets", os.path.basename(path) + ".json")
        if os.path.exists(fn):
            with open(fn) as f:
                per_net.append(json.load(f))
            continue
        res = run_net(path, prop1, a, ni < a.verify_nets, log)
        with open(fn + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(fn + ".tmp", fn)
        per_net.append(res)
        with open(os.path.join(a.output, "summary.json"), "w") as f:
            json.dump(summarise(per_net), f, indent=1)
    with open(os.path.join(a.output, "summary.json"), "w") as f:
        json.dump(summarise(per_net), f, indent=1)


if __name__ == "__main__":
    main()
