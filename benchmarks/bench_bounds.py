"""Benchmark of dpllnn.bounds against plain-numpy implementations of the same methods (not a test).

    .venv/bin/python benchmarks/bench_bounds.py [--benchmarks-root DIR] [--blas-threads 1] [--repeat 7]

Prints a table: case, dpllnn time, numpy time (for batch_crown: the single-box calls), ratio,
target; then the unstable-neuron counts at the
root boxes of ACAS Xu prop_1 (network 1_1) and mnist_fc prop_0_0.03 (256x6).  Times are the median
of ``--repeat`` runs after a warm-up (numba compile excluded; ``cache=True``).  The numpy
references use the same algorithms (and the same IBP row selection for CROWN) but no rounding
margin.  BLAS defaults to one thread: a verifier runs one process per core, and multi-threaded
OpenBLAS thrashes on small products when the machine is shared.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--benchmarks-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "benchmarks"))
    ap.add_argument("--blas-threads", default="1")
    ap.add_argument("--repeat", type=int, default=7)
    return ap.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", ARGS.blas_threads)
    os.environ.setdefault("OMP_NUM_THREADS", ARGS.blas_threads)

import numpy as np  # noqa: E402

from dpllnn import load_network, load_spec  # noqa: E402
from dpllnn.bounds import (batch_crown, batch_objective_bounds, compute_bounds,  # noqa: E402
                           objective_bounds, pack)


# ---- plain numpy references -----------------------------------------------------------------
def np_symbolic_batch(net, lbs, ubs, C, d):
    """Forward symbolic intervals (adaptive lower slope), batched over boxes, in numpy."""
    B, n_in = lbs.shape
    mid, rad = (lbs + ubs) / 2, (ubs - lbs) / 2
    W0, b0 = net.affines[0].W, net.affines[0].b
    Lz = np.broadcast_to(np.concatenate([W0, b0[:, None]], 1)[:, None, :], (W0.shape[0], B, n_in + 1)).copy()
    Uz = Lz.copy()

    def conc(E):
        v = np.einsum("nbt,bt->nb", E[:, :, :n_in], mid) + E[:, :, n_in]
        r = np.einsum("nbt,bt->nb", np.abs(E[:, :, :n_in]), rad)
        return v - r, v + r

    for aff in net.affines[1:]:
        Llo, Lhi = conc(Lz)
        Ulo, Uhi = conc(Uz)
        unst = (Llo < 0) & (Uhi > 0)
        dead = Uhi <= 0
        chord = unst & (Ulo < 0)
        s = np.where(chord, Uhi / np.where(chord, Uhi - Ulo, 1.0), 1.0)
        Uz = Uz * s[:, :, None]
        Uz[:, :, n_in] -= np.where(chord, s * Ulo, 0.0)
        lam = np.where(unst, np.where(Lhi <= 0, 0.0, np.where(Llo >= 0, 1.0, (Lhi > -Llo) * 1.0)), 1.0)
        Lz = Lz * lam[:, :, None]
        Lz[dead] = 0.0
        Uz[dead] = 0.0
        n = Lz.shape[0]
        Cc = ((Lz + Uz) / 2).reshape(n, -1)
        R = ((Uz - Lz) / 2).reshape(n, -1)
        Zc = (aff.W @ Cc).reshape(aff.n_out, B, n_in + 1)
        Zr = (np.abs(aff.W) @ R).reshape(aff.n_out, B, n_in + 1)
        Lz, Uz = Zc - Zr, Zc + Zr
        Lz[:, :, n_in] += aff.b[:, None]
        Uz[:, :, n_in] += aff.b[:, None]
    E = np.einsum("ri,ibt->rbt", np.maximum(C, 0), Lz) + np.einsum("ri,ibt->rbt", np.minimum(C, 0), Uz)
    E[:, :, n_in] -= d[:, None]
    return conc(E)[0].T


def np_backward(net, bounds, k, A, c, xl, xu):
    """min of A @ z_k + c by back-substitution (rows of A), numpy."""
    A = A.copy()
    c = c.copy()
    for j in range(k, -1, -1):
        aff = net.affines[j]
        c = c + A @ aff.b
        A = A @ aff.W
        if j == 0:
            break
        l, u = bounds[j - 1]
        unst = (l < 0) & (u > 0)
        s = np.where(unst, u / np.where(unst, u - l, 1.0), (l >= 0) * 1.0)
        t = np.where(unst, -s * l, 0.0)
        al = np.where(unst, (u > -l) * 1.0, (l >= 0) * 1.0)
        Ap, An = np.maximum(A, 0), np.minimum(A, 0)
        c = c + An @ t
        A = Ap * al + An * s
    return c + np.maximum(A, 0) @ xl + np.minimum(A, 0) @ xu


def np_crown(net, xl, xu):
    """Full CROWN of all layers in numpy (IBP row selection as in dpllnn)."""
    bounds = []
    al, au = xl, xu
    for k, aff in enumerate(net.affines):
        Wp, Wn = np.maximum(aff.W, 0), np.minimum(aff.W, 0)
        lo, hi = Wp @ al + Wn @ au + aff.b, Wp @ au + Wn @ al + aff.b
        if k > 0:
            sel = np.flatnonzero((lo < 0) & (hi > 0)) if k < len(net.affines) - 1 else np.arange(aff.n_out)
            if sel.size:
                E = np.eye(aff.n_out)[sel]
                lo[sel] = np.maximum(lo[sel], np_backward(net, bounds, k, E, np.zeros(sel.size), xl, xu))
                hi[sel] = np.minimum(hi[sel], -np_backward(net, bounds, k, -E, np.zeros(sel.size), xl, xu))
        bounds.append((lo, hi))
        al, au = np.maximum(lo, 0), np.maximum(hi, 0)
    return bounds


# ---- timing -----------------------------------------------------------------------------------
def timeit(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def fmt(t):
    return f"{t * 1e6:9.1f} us" if t < 1e-3 else f"{t * 1e3:9.2f} ms"


def main():
    root = Path(ARGS.benchmarks_root)
    acas = root / "vnncomp2021" / "acasxu"
    mnist = root / "vnncomp2022" / "mnist_fc"
    if not acas.is_dir() or not mnist.is_dir():
        print(f"benchmarks not found under {root}", file=sys.stderr)
        return 2
    rep = ARGS.repeat
    rows = []
    net_a = load_network(acas / "ACASXU_run2a_1_1_batch_2000.onnx")
    spec_a = load_spec(acas / "prop_1.vnnlib", net_a.n_inputs, net_a.n_outputs)
    Pa = pack(net_a)
    ca = spec_a.cases[0]
    Ca, da = ca.disjuncts[0].C, ca.disjuncts[0].d
    rng = np.random.default_rng(0)
    B = 1024
    w = (ca.ub - ca.lb) / 16
    lbs = ca.lb + rng.random((B, 5)) * (ca.ub - ca.lb - w)
    ubs = lbs + w
    t_ours = timeit(lambda: batch_objective_bounds(Pa, lbs, ubs, Ca, da, "symbolic"), rep) / B
    t_np = timeit(lambda: np_symbolic_batch(net_a, lbs, ubs, Ca, da), rep) / B
    ours = batch_objective_bounds(Pa, lbs, ubs, Ca, da, "symbolic")
    ref = np_symbolic_batch(net_a, lbs, ubs, Ca, da)
    assert np.allclose(ours, ref, rtol=1e-6, atol=1e-6), "symbolic mismatch with numpy reference"
    rows.append(("ACAS 1_1 symbolic, per box (batch 1024)", t_ours, t_np, 20e-6))
    Bc = 256

    def single_crown():
        for i in range(Bc):
            r = compute_bounds(Pa, lbs[i], ubs[i], None, "crown")
            objective_bounds(Pa, lbs[i], ubs[i], r, Ca, da)
    t_single = timeit(single_crown, max(3, rep // 2)) / Bc
    t_batch = timeit(lambda: batch_crown(Pa, lbs[:Bc], ubs[:Bc], Ca, da), rep) / Bc
    t_par = timeit(lambda: batch_crown(Pa, lbs[:Bc], ubs[:Bc], Ca, da, parallel=True), rep) / Bc
    rows.append(("ACAS 1_1 batch_crown per box (256) vs single calls", t_batch, t_single, 500e-6))
    rows.append(("ACAS 1_1 batch_crown parallel per box vs single calls", t_par, t_single, 500e-6))
    t_ours = timeit(lambda: compute_bounds(Pa, ca.lb, ca.ub, None, "crown", early_stop=True), rep)
    t_ours_ne = timeit(lambda: compute_bounds(Pa, ca.lb, ca.ub, None, "crown", early_stop=False), rep)
    t_np = timeit(lambda: np_crown(net_a, ca.lb, ca.ub), rep)
    rows.append(("ACAS 1_1 full CROWN all layers (early stop)", t_ours, t_np, 500e-6))
    rows.append(("ACAS 1_1 full CROWN all layers (no early stop)", t_ours_ne, t_np, 500e-6))

    net_m = load_network(mnist / "onnx" / "mnist-net_256x6.onnx")
    spec_m = load_spec(mnist / "vnnlib" / "prop_0_0.03.vnnlib", net_m.n_inputs, net_m.n_outputs)
    Pm = pack(net_m)
    cm = spec_m.cases[0]
    Cm = np.vstack([dj.C for dj in cm.disjuncts])
    dm = np.concatenate([dj.d for dj in cm.disjuncts])
    t_ours = timeit(lambda: compute_bounds(Pm, cm.lb, cm.ub, None, "crown", early_stop=True), rep)
    t_ours_ne = timeit(lambda: compute_bounds(Pm, cm.lb, cm.ub, None, "crown", early_stop=False), rep)
    t_np = timeit(lambda: np_crown(net_m, cm.lb, cm.ub), max(3, rep // 2))
    rows.append(("mnist 256x6 full CROWN all layers (early stop)", t_ours, t_np, 40e-3))
    rows.append(("mnist 256x6 full CROWN all layers (no early stop)", t_ours_ne, t_np, 40e-3))
    lbd = compute_bounds(Pm, cm.lb, cm.ub, None, "crown")
    nb = np_crown(net_m, cm.lb, cm.ub)
    L = len(net_m.affines) - 1
    t_ours = timeit(lambda: objective_bounds(Pm, cm.lb, cm.ub, lbd, Cm, dm), rep)
    t_np = timeit(lambda: (np_backward(net_m, nb, L, Cm, -dm, cm.lb, cm.ub),
                           np_backward(net_m, nb, L, -Cm, dm, cm.lb, cm.ub)), rep)
    rows.append(("mnist 256x6 output-only CROWN (9 rows, lower+upper)", t_ours, t_np, 2e-3))

    print(f"{'case':55s} {'dpllnn':>12s} {'numpy':>12s} {'ratio':>7s} {'target':>12s}")
    for name, a, b, tgt in rows:
        ok = "ok" if a <= tgt else "MISS"
        print(f"{name:55s} {fmt(a)} {fmt(b)} {b / a:6.1f}x {fmt(tgt)} {ok}")
    print()
    methods = (("ibp", {}), ("symbolic", {}), ("crown", {}), ("alpha", {}),
               ("alpha", {"intermediate": True}))
    print(f"{'root box':40s} " + " ".join(f"{m:>9s}" for m in ("ibp", "symbolic", "crown", "alpha", "alpha+int")))
    for name, P, c, C, d in (("ACAS Xu 1_1 prop_1 (300 ReLUs)", Pa, ca, Ca, da),
                             ("mnist_fc 256x6 prop_0_0.03 (1536 ReLUs)", Pm, cm, Cm, dm)):
        counts, lows = [], []
        for m, kw in methods:
            r = compute_bounds(P, c.lb, c.ub, None, m, C=C, d=d, **kw)
            counts.append(r.n_unstable)
            lows.append(float(np.min(r.obj_lower)))
        print(f"{name:40s} " + " ".join(f"{n:9d}" for n in counts))
        print(f"{'  min obj lower bound':40s} " + " ".join(f"{v:9.3g}" for v in lows))
    print(f"\nBLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS')}, cpus: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
