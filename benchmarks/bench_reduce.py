"""Measure dpllnn.reduce on the ACAS Xu networks (prune, slice, verify on pruned networks).

    python benchmarks/bench_reduce.py --acas DIR [--nets 45] [--every 1] [--regions prop1,full]
        [--slices 16,64,256] [--slice-regions prop1,full] [--slices-every K] [--slice-equiv-every K]
        [--slice-equiv-upto K] [--verify-nets 9] [--verify-timeout 30] [--verify-repeats 1]
        [--reuse OLD_DIR] [--redo STEPS] -o OUT_DIR

The measurement behind issue #6 (2 cores shared with other jobs, so times are inflated and noisy):

* prop1 (all 45 networks)::

      --regions prop1 --slice-regions prop1 --verify-nets 9 --reuse <an earlier run's dir>
      --redo prune/prop1,verify --slices 16,64   (then again with --slices 16,64,256)

  prune and verify redone (the equivalence check differs from the earlier run's); 16 and 64
  slices reused from the earlier run where :func:`reusable` allows (same settings; every slice
  proved; for 64, no slice above half, so the alpha step is not reached), else recomputed; 256
  slices on the 34 networks the earlier run did not reach.  verify ratio: a separate run ``--slices '' --nets 9 --verify-nets 9
  --verify-repeats 5`` (the fastest of 5 alternating runs; the first verify of a process also pays
  numba's cache loading).
* full (all 45 networks)::

      --regions full --slice-regions full --slice-equiv-every 5 --slice-equiv-upto 64
      --slices 16,64   (then --slices 16,64,256 --slices-every 5)

  the same prune as prop1; slices in the cheap mode below; slice equivalence tried on every 5th
  network only and not for 256 slices (checking 64 full-size slices costs ~1 min per network on
  a loaded machine), 256 slices on every 5th network only.

Regions: ``prop1`` is prop_1.vnnlib's input box; ``full`` is the union box of the 10 ACAS Xu
properties, ``X_0 in [-0.328422877, 0.679857769]`` and ``X_1..X_4 in [-0.5, 0.5]`` (the networks'
normalised input ranges).

Settings (chosen from timing 2 networks):

* prune: stable sets certified on ``--prune-refine`` (256) sub-boxes (IBP + layer-wise CROWN per
  sub-box, a 2 s MILP budget in all; a neuron is stable when it is, with one sign, on every
  sub-box); the plain certification (one box, IBP + CROWN + alpha-CROWN + PGD + 2 s MILP) is also
  recorded as ``relus_plain`` for comparison; equivalence of the pruned network proved on the
  region with the certified phases and the certification tiling (tight atom ranges for the
  form-matching proof), ``--prune-equiv-timeout`` (30 s; forms needs 1-2 s).
* slice, 16 and 64 regions of ``prop1``: bounds-only per slice (IBP + layer-wise CROWN, no MILP)
  with ``refine=16`` sub-boxes; at 64 regions (the issue's target: every slice at most half of
  the ReLUs) adaptive refinement: a slice still above half is re-certified with 4x the sub-boxes,
  up to 256, and then once more with alpha-CROWN on every sub-box (``refine_alpha``).
  Equivalence per slice, 2 s.
* slice, 256 regions, and every slicing of ``full``: bounds-only, no refinement (the cheap mode),
  equivalence 0.5 s per slice.
* verify: ``verify(prop_1)`` on the original and the prop1-pruned network (float64 ONNX) of the
  first ``--verify-nets`` networks, ``--verify-timeout`` each, one worker.

Results: one ``OUT_DIR/nets/<net>.json`` per network, written after every step (a rerun skips
steps already there, so the script is resumable per step) and ``OUT_DIR/summary.json``, the
aggregate over the networks done so far.  Progress is printed (one line per step).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
import time

import numpy as np

from dpllnn.io.onnx_load import load_onnx
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
        kw.update(refine_until=0.5, refine_max=256, refine_alpha=True)
    return kw


def reusable(key: str, old: dict | None, settings: dict) -> bool:
    """May the step ``key`` of an earlier run (``old``) stand for a run with ``settings``?

    Yes when it was run with the same settings, or when the only difference is
    ``refine_alpha`` and no slice was left above ``refine_until`` (the alpha step is not reached);
    a slicing with a slice not proved equivalent is never reused (the equivalence check has
    changed since: it now uses the certification tiling).
    """
    if old is None or (key.startswith("slice/") and (old["proved"] or 0) < old["regions"]):
        return False
    if old.get("settings") == settings:
        return True
    plain = {k: v for k, v in settings.items() if k != "refine_alpha"}
    return (key.startswith("slice/") and old.get("settings") == plain
            and settings.get("refine_alpha") and old["share_max"] <= settings["refine_until"])


def run_net(path, prop1, a, do_verify, big_slices, slice_equiv, log, res, old, save):
    """Fill ``res`` (the per-net record, possibly partial from an interrupted run) step by step;
    a step missing from ``res`` is taken from ``old`` (an earlier run, ``--reuse``) when
    :func:`reusable` and not in ``--redo``, else computed.  ``save()`` after every step.
    ``big_slices``: also slice counts >= ``--slices-every-from``; ``slice_equiv``: prove the
    slices equivalent (else ``proved`` is None)."""
    net = load_onnx(path)
    name = os.path.basename(path)
    res.setdefault("net", name)
    res.setdefault("relus", net.n_relus)
    for k in ("prune", "slice"):
        res.setdefault(k, {})
    res.setdefault("verify", None)
    old = old or {"prune": {}, "slice": {}}
    redo = set(a.redo.split(",")) if a.redo else set()
    regions = {"prop1": load_region(prop1, net), "full": [FULL]}
    regions = {k: v for k, v in regions.items() if k in a.regions.split(",")}
    prune_kw = {"refine": a.prune_refine, "budget_s": a.prune_budget,
                "equiv_timeout_s": a.prune_equiv_timeout, "equiv_tiling": True}
    for rn, boxes in regions.items():
        need_verify = rn == "prop1" and do_verify and res.get("verify") is None
        old_prune = old["prune"].get(rn)
        if rn not in res["prune"] and f"prune/{rn}" not in redo and reusable(
                f"prune/{rn}", old_prune, prune_kw) and not (need_verify and "verify" in redo):
            res["prune"][rn] = dict(old_prune, reused=True)
            if need_verify and old.get("verify"):
                res["verify"] = dict(old["verify"], reused=True)
            save()
        if rn not in res["prune"] or (need_verify and res.get("verify") is None):
            t = time.monotonic()
            st = certify_stable(net, boxes, budget_s=a.prune_budget, refine=a.prune_refine,
                                use_alpha=False, use_pgd=False, n_samples=16)
            small, rep = prune_network(net, st)
            t_prune = time.monotonic() - t
            eq = check_equivalence(net, small, boxes, timeout_s=a.prune_equiv_timeout,
                                   phases=[st.phase] * len(boxes), tiling=st.cert_boxes)
            plain = prune_network(net, certify_stable(net, boxes, budget_s=a.prune_budget))[0]
            res["prune"][rn] = {"removed": net.n_relus - small.n_relus, "relus": small.n_relus,
                                "relus_plain": plain.n_relus, "prune_s": t_prune,
                                "time_s": time.monotonic() - t, "proved": eq.proved,
                                "equiv_how": eq.how, "equiv_s": eq.time_s, "steps": rep.steps,
                                "settings": prune_kw}
            log(f"{name} prune {rn}: {net.n_relus} -> {small.n_relus} ReLUs (plain {plain.n_relus}), "
                f"{t_prune:.1f} s, equiv {eq.verdict} by {eq.how} {eq.time_s:.1f} s")
            save()
            if need_verify:
                from dpllnn.io.onnx_export import to_onnx
                from dpllnn.search.verify import verify
                spec = parse_vnnlib(prop1, n_inputs=5, n_outputs=5)
                with tempfile.TemporaryDirectory() as d:
                    small.source = os.path.join(d, "p.onnx")
                    to_onnx(small, small.source, dtype="float64")
                    t0s, t1s = [], []
                    for _ in range(a.verify_repeats):     # alternate; keep each one's fastest
                        r0 = verify(net, spec, timeout_s=a.verify_timeout, workers=1)
                        r1 = verify(small, spec, timeout_s=a.verify_timeout, workers=1)
                        t0s.append(r0.time_s)
                        t1s.append(r1.time_s)
                    small.source = None
                res["verify"] = {"orig": r0.verdict.value, "orig_s": min(t0s),
                                 "pruned": r1.verdict.value, "pruned_s": min(t1s),
                                 "relus_pruned": small.n_relus, "orig_all_s": t0s,
                                 "pruned_all_s": t1s}
                log(f"{name} verify prop_1: original {r0.verdict.value} {r0.time_s:.2f} s, "
                    f"pruned {r1.verdict.value} {r1.time_s:.2f} s")
                save()
        if rn not in a.slice_regions.split(","):
            continue
        for K in [int(k) for k in a.slices.split(",") if k]:
            key = f"{rn}/{K}"
            if key in res["slice"]:
                continue
            kw = slice_settings(rn, K)
            if f"slice/{key}" not in redo and reusable(f"slice/{key}", old["slice"].get(key), kw):
                res["slice"][key] = dict(old["slice"][key], reused=True, settings=kw)
                save()
                continue
            if K >= a.slices_every_from and not big_slices:
                continue
            t = time.monotonic()
            check = slice_equiv and K <= a.slice_equiv_upto
            man = slice_network(net, boxes, K, None, budget_s=0.0, thorough=False,
                                equiv=check, **kw)
            rs = [r["relus"] for r in man["regions"]]
            d = {"share_mean": float(np.mean(rs)) / net.n_relus,
                 "share_max": max(rs) / net.n_relus, "regions": len(rs),
                 "proved": int(sum(r["proved"] for r in man["regions"])) if check else None,
                 "refine_max_used": int(max(r["refine"] for r in man["regions"])),
                 "alpha_slices": int(sum(r.get("refine_alpha", False) for r in man["regions"])),
                 "time_s": time.monotonic() - t, "settings": kw}
            res["slice"][key] = d
            log(f"{name} slice {key}: mean {100 * d['share_mean']:.1f}%, worst "
                f"{100 * d['share_max']:.1f}%, proved {d['proved']}/{len(rs)}, {d['time_s']:.1f} s")
            if not check:
                d["settings"] = dict(kw, equiv=False)
            save()
    return res


def summarise(per_net: list) -> dict:
    out = {"n": len(per_net), "prune": {}, "slice": {}, "verify": []}
    for rn in ("prop1", "full"):
        rr = [r["prune"][rn] for r in per_net if rn in r["prune"]]
        if rr:
            out["prune"][rn] = {"removed": stats([x["removed"] for x in rr]),
                                "removed_plain": stats([300 - x["relus_plain"] for x in rr]),
                                "time_s": stats([x["time_s"] for x in rr]),
                                "proved": sum(x["proved"] for x in rr), "n": len(rr),
                                "equiv_how": {h: sum(x["equiv_how"] == h for x in rr)
                                              for h in sorted({x["equiv_how"] for x in rr})},
                                "reused": sum(bool(x.get("reused")) for x in rr)}
    keys = sorted({k for r in per_net for k in r["slice"]})
    for key in keys:
        v = [r["slice"][key] for r in per_net if key in r["slice"]]
        out["slice"][key] = {"share_mean": float(np.mean([x["share_mean"] for x in v])),
                             "share_max_worst": float(max(x["share_max"] for x in v)),
                             "nets_worst_over_half": int(sum(x["share_max"] > 0.5 for x in v)),
                             "regions": int(sum(x["regions"] for x in v)),
                             "proved": int(sum(x["proved"] for x in v if x["proved"] is not None)),
                             "regions_checked": int(sum(x["regions"] for x in v
                                                        if x["proved"] is not None)),
                             "time_s_mean": float(np.mean([x["time_s"] for x in v])), "n": len(v),
                             "alpha_slices": int(sum(x.get("alpha_slices", 0) for x in v)),
                             "reused": int(sum(bool(x.get("reused")) for x in v))}
    vv = [dict(net=r["net"], **r["verify"]) for r in per_net if r.get("verify")]
    out["verify"] = vv
    if vv:
        o, p = sum(x["orig_s"] for x in vv), sum(x["pruned_s"] for x in vv)
        out["verify_total"] = {"orig_s": o, "pruned_s": p, "ratio": p / o,
                               "ratio_per_net": stats([x["pruned_s"] / x["orig_s"] for x in vv])}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--acas", default="/work/shared/benchmarks/vnncomp2021/acasxu")
    ap.add_argument("--nets", type=int, default=45)
    ap.add_argument("--slices", default="16,64,256")
    ap.add_argument("--regions", default="prop1,full", help="regions to measure at all")
    ap.add_argument("--slice-regions", default="prop1,full")
    ap.add_argument("--every", type=int, default=1, help="take every k-th network (sorted)")
    ap.add_argument("--prune-equiv-timeout", type=float, default=30.0)
    ap.add_argument("--prune-budget", type=float, default=2.0)
    ap.add_argument("--prune-refine", type=int, default=256)
    ap.add_argument("--verify-nets", type=int, default=0)
    ap.add_argument("--verify-timeout", type=float, default=30.0)
    ap.add_argument("--verify-repeats", type=int, default=1,
                    help="verify each network this many times (alternating), report the fastest")
    ap.add_argument("--slices-every", type=int, default=1,
                    help="slice counts >= --slices-every-from only on every k-th of the 45 networks")
    ap.add_argument("--slices-every-from", type=int, default=256)
    ap.add_argument("--slice-equiv-every", type=int, default=1,
                    help="prove slices equivalent only on every k-th of the 45 networks")
    ap.add_argument("--slice-equiv-upto", type=int, default=10 ** 9,
                    help="prove slices equivalent only for slicings into at most this many regions")
    ap.add_argument("--reuse", help="an earlier OUT_DIR whose per-net steps are reused (see reusable)")
    ap.add_argument("--redo", default="", help="steps never reused, e.g. prune/prop1,verify")
    ap.add_argument("-o", "--output", required=True, help="output directory")
    a = ap.parse_args()
    all_nets = sorted(glob.glob(os.path.join(a.acas, "ACASXU_run2a_*_batch_2000.onnx")))
    nets = all_nets[:: a.every][: a.nets]
    prop1 = os.path.join(a.acas, "prop_1.vnnlib")
    os.makedirs(os.path.join(a.output, "nets"), exist_ok=True)
    t0 = time.monotonic()

    def log(msg):
        print(f"[{time.monotonic() - t0:7.1f} s] {msg}", flush=True)

    per_net = []
    for ni, path in enumerate(nets):
        base = os.path.basename(path) + ".json"
        fn = os.path.join(a.output, "nets", base)
        res = {}
        if os.path.exists(fn):
            with open(fn) as f:
                res = json.load(f)
        old = None
        if a.reuse and os.path.exists(os.path.join(a.reuse, "nets", base)):
            with open(os.path.join(a.reuse, "nets", base)) as f:
                old = json.load(f)

        def save(res=res, fn=fn):
            with open(fn + ".tmp", "w") as f:
                json.dump(res, f, indent=1)
            os.replace(fn + ".tmp", fn)

        idx = all_nets.index(path)
        run_net(path, prop1, a, ni < a.verify_nets, idx % a.slices_every == 0,
                idx % a.slice_equiv_every == 0, log, res, old, save)
        per_net.append(res)
        with open(os.path.join(a.output, "summary.json"), "w") as f:
            json.dump(summarise(per_net), f, indent=1)
    with open(os.path.join(a.output, "summary.json"), "w") as f:
        json.dump(summarise(per_net), f, indent=1)


if __name__ == "__main__":
    main()
