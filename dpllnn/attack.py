"""Falsification: random sampling and projected gradient descent (Madry et al. 2018).

The attack minimises a disjunct's *margin* ``max_i (C @ N(x) - d)_i`` over an input box; a point
with margin ``<= 0`` is a candidate counterexample.  Candidates are never trusted: :func:`falsify`
pushes them to a safely negative margin, snaps them to float32-representable inputs inside the box
(so that dpllnn's float64 pass and onnxruntime's float32 pass see the same input) and returns only
what :func:`dpllnn.validate.check_counterexample` accepts.

Building blocks, reusable by the input-splitting search:

- :func:`network_gradient` -- gradient of ``c @ N(x)`` w.r.t. ``x`` (batched, analytic backprop);
- :func:`margin_and_grad` -- the margin of a disjunct and its (sub)gradient, batched;
- :func:`falsify_box` -- PGD inside one box for one disjunct, without validation.
"""
from __future__ import annotations

import time

import numpy as np

from .network import Network
from .result import Counterexample
from .spec import Spec, union_row
from .validate import check_counterexample

__all__ = ["network_gradient", "margin_and_grad", "falsify_box", "falsify", "snap_float32",
           "validate_candidate", "output_diversified"]

_DEPTH_REL = 1e-4     # PGD stops early once margin < -_DEPTH_REL * scale (safely negative)


def _forward_masks(network: Network, X: np.ndarray):
    """Forward pass keeping the ReLU masks. X (batch, n_in) -> (Y (batch, n_out), masks)."""
    if getattr(network, "is_graph", False):
        return network.forward_masks(X)
    a = X
    masks = []
    last = len(network.affines) - 1
    for k, aff in enumerate(network.affines):
        z = a @ aff.W.T + aff.b
        if k < last:
            m = z > 0.0
            masks.append(m)
            a = np.where(m, z, 0.0)
        else:
            a = z
    return a, masks


def _backward(network: Network, masks, G: np.ndarray, leak: float = 0.0) -> np.ndarray:
    """Backpropagate output cotangents G (batch, n_out) to the input (batch, n_in).

    ``leak > 0`` gives inactive neurons that slope (a leaky-ReLU surrogate gradient)."""
    if getattr(network, "is_graph", False):     # one reverse-mode pass through the DAG
        return network.backward(masks, G, leak)
    for k in range(len(network.affines) - 1, -1, -1):
        G = G @ network.affines[k].W
        if k > 0:
            G = G * (masks[k - 1] if leak == 0.0 else np.where(masks[k - 1], 1.0, leak))
    return G


def network_gradient(network: Network, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Gradient of ``c @ N(x)`` with respect to ``x`` (ReLU derivative 0 at 0).

    Parameters
    ----------
    network : Network
    x : ndarray, shape (n_inputs,) or (batch, n_inputs), float
    c : ndarray, shape (n_outputs,) or (batch, n_outputs), float -- one weight vector for all
        rows, or one per row

    Returns
    -------
    ndarray, float64, shape like ``x``
    """
    x = np.asarray(x, dtype=np.float64)
    single = x.ndim == 1
    X = np.atleast_2d(x)
    C = np.broadcast_to(np.asarray(c, dtype=np.float64), (X.shape[0], network.n_outputs))
    _, masks = _forward_masks(network, X)
    G = _backward(network, masks, np.array(C))
    return G[0] if single else G


def margin_and_grad(network: Network, X: np.ndarray, C: np.ndarray, d: np.ndarray,
                    leak: float = 0.0, groups: np.ndarray | None = None):
    """Disjunct margin ``max_i (C @ N(x) - d)_i`` and its subgradient, batched.

    With ``groups`` the rows of ``C`` are several disjuncts stacked, and the margin is that of
    their union, ``min_k max_{i in group k} (C @ N(x) - d)_i``.

    Parameters
    ----------
    network : Network
    X : ndarray, shape (batch, n_inputs), float64
    C : ndarray, shape (m, n_outputs), float64, m >= 1
    d : ndarray, shape (m,), float64
    leak : float -- where the true gradient is exactly zero (flat region), return instead the
        gradient of the leaky-ReLU surrogate network with this negative slope (0: never)
    groups : ndarray of int, shape (k,), optional -- first row of each disjunct (increasing,
        starting at 0); None means one disjunct

    Returns
    -------
    margin : ndarray, shape (batch,), float64 -- ``<= 0`` means the disjunct holds
    grad : ndarray, shape (batch, n_inputs), float64 -- gradient of the arg-max row
    """
    Y, masks = _forward_masks(network, X)
    R = Y @ C.T - d
    i = union_row(R, groups)
    margin = R[np.arange(R.shape[0]), i]
    grad = _backward(network, masks, C[i])
    dead = ~np.any(grad != 0.0, axis=1)
    if leak > 0.0 and np.any(dead):  # flat region (e.g. a whole layer inactive): surrogate
        grad[dead] = _backward(network, [mk[dead] for mk in masks], C[i[dead]], leak)
    return margin, grad


def _pgd(network, X, lb, ub, C, d, steps, deadline=None, stop_below=-np.inf, groups=None):
    """PGD from every row of X. Returns (best X per row, best margin per row)."""
    width = ub - lb
    n = X.shape[0]
    best_x = X.copy()
    best_m = np.full(n, np.inf)
    half = n // 2  # rows [0, half): sign steps (Madry); rows [half, n): scaled-gradient steps
    a0, a1 = 0.25, 1e-3
    for t in range(steps + 1):
        m, g = margin_and_grad(network, X, C, d, leak=0.1, groups=groups)
        better = m < best_m
        best_m[better] = m[better]
        best_x[better] = X[better]
        if t == steps or best_m.min() < stop_below:
            break
        if deadline is not None and time.monotonic() > deadline:
            break
        alpha = a0 * (a1 / a0) ** (t / max(steps - 1, 1))
        step = np.empty_like(g)
        step[:half] = np.sign(g[:half])
        gw = g[half:] * width
        nrm = np.max(np.abs(gw), axis=1, keepdims=True)
        step[half:] = np.divide(gw, nrm, out=np.zeros_like(gw), where=nrm > 0) * (width > 0)
        X = np.clip(X - alpha * width * step, lb, ub)
    return best_x, best_m


def output_diversified(network: Network, X: np.ndarray, lb: np.ndarray, ub: np.ndarray,
                       rng: np.random.Generator, steps: int = 10, step: float = 0.05) -> np.ndarray:
    """Output-diversified starting points (ODS; Tashiro, Song, Ermon, NeurIPS 2020).

    Each row of ``X`` takes ``steps`` signed-gradient steps of ``step * (ub - lb)`` up a random
    linear function ``w_i . N(x)`` of the output (``w_i`` uniform in ``[-1, 1]^n_out``, new at
    every step), inside the box.  PGD from such points reaches regions that uniform starts miss
    when the margin is flat almost everywhere (measured: mnist_fc 256x6 prop_1_0.05's union
    margin stalls at 0.81 from 300 uniform starts, and is -0.90 from 64 ODS starts).

    X : ndarray (batch, n_inputs) float64; lb, ub : (n_inputs,).  Returns the moved points.
    """
    X = np.array(X, dtype=np.float64)
    width = ub - lb
    for _ in range(steps):
        _, masks = _forward_masks(network, X)
        Wd = rng.uniform(-1.0, 1.0, size=(X.shape[0], network.n_outputs))
        G = _backward(network, masks, Wd, leak=0.1)
        X = np.clip(X + step * width * np.sign(G), lb, ub)
    return X


def _starts(rng, lb, ub, n, x0=None):
    X = lb + rng.random((n, lb.shape[0])) * (ub - lb)
    if x0 is not None:
        x0 = np.clip(np.atleast_2d(np.asarray(x0, dtype=np.float64)), lb, ub)[:n]
        X[:x0.shape[0]] = x0
    return X


def falsify_box(network: Network, lb: np.ndarray, ub: np.ndarray, C: np.ndarray, d: np.ndarray,
                seed: int = 0, steps: int = 50, restarts: int = 8, *, x0: np.ndarray | None = None,
                deadline: float | None = None, stop_below: float = -np.inf,
                groups: np.ndarray | None = None):
    """PGD on one disjunct inside one box, without validation (the caller validates).

    Parameters
    ----------
    network : Network
    lb, ub : ndarray, shape (n_inputs,), float64 -- the box
    C : ndarray, shape (m, n_outputs); d : ndarray, shape (m,) -- the disjunct ``C @ y <= d``
    seed : int -- restarts start uniformly at random in the box (deterministic given seed)
    steps : int -- PGD steps per restart
    restarts : int -- number of parallel (batched) restarts
    x0 : ndarray, shape (k, n_inputs) or (n_inputs,), optional -- starting points used first
    deadline : float, optional -- ``time.monotonic()`` value at which to stop
    stop_below : float -- stop as soon as some margin is below this
    groups : ndarray of int, optional -- ``C`` stacks several disjuncts starting at these rows:
        attack their union (see :func:`margin_and_grad`)

    Returns
    -------
    best_x : ndarray, shape (n_inputs,), float64 -- inside [lb, ub]
    best_margin : float -- ``max_i (C @ N(best_x) - d)_i`` (float64 forward)
    """
    lb = np.asarray(lb, dtype=np.float64)
    ub = np.asarray(ub, dtype=np.float64)
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    X = _starts(rng, lb, ub, max(int(restarts), 1), x0)
    bx, bm = _pgd(network, X, lb, ub, C, d, int(steps), deadline, stop_below, groups)
    i = int(np.argmin(bm))
    return bx[i], float(bm[i])


def snap_float32(x: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """The float32-representable point nearest ``x`` inside ``[lb, ub]`` (``x`` if none is).

    Parameters
    ----------
    x, lb, ub : ndarray, shape (n_inputs,), float64

    Returns
    -------
    ndarray, shape (n_inputs,), float64
    """
    x32 = x.astype(np.float32)
    lo = x32.astype(np.float64) < lb
    x32[lo] = np.nextafter(x32[lo], np.float32(np.inf))
    hi = x32.astype(np.float64) > ub
    x32[hi] = np.nextafter(x32[hi], np.float32(-np.inf))
    xs = x32.astype(np.float64)
    bad = (xs < lb) | (xs > ub) | ~np.isfinite(xs)
    xs[bad] = x[bad]
    return xs


def validate_candidate(network: Network, spec: Spec, x: np.ndarray, lb: np.ndarray,
                       ub: np.ndarray, use_onnxruntime: bool = True) -> Counterexample | None:
    """:func:`check_counterexample` on ``x`` rounded to the nearest float32 point inside the box
    (what onnxruntime's float32 input sees), then on ``x`` itself; the first accepted one.

    x, lb, ub : ndarray, shape (n_inputs,), float64
    """
    for cand in (snap_float32(x, lb, ub), x):
        cex = check_counterexample(network, spec, cand, use_onnxruntime=use_onnxruntime)
        if cex is not None:
            return cex
    return None


def _target_margin(Y, C, d, groups):
    R = Y @ C.T - d
    if groups is None or len(groups) <= 1:
        return R.max(axis=1)
    return np.maximum.reduceat(R, groups, axis=1).min(axis=1)


def _corners(rng, lb, ub, k):
    n = lb.shape[0]
    if n <= 10 and 2 ** n <= k:
        bits = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1).astype(bool)
    else:
        bits = rng.random((k, n)) < 0.5
    return np.where(bits, ub, lb)


def falsify(network: Network, spec: Spec, *, time_limit_s: float | None = 1.0, n_random: int = 512,
            pgd_restarts: int = 16, pgd_steps: int = 60, seed: int = 0,
            use_onnxruntime: bool = True, deadline: float | None = None,
            starts: dict | None = None) -> Counterexample | None:
    """Look for a counterexample with random sampling and PGD, until the time is up.

    Each case gets ``n_random`` uniform samples plus the box centre and corners, then rounds of
    batched PGD (``pgd_restarts`` restarts of ``pgd_steps`` steps; the best random samples seed
    the first round, later rounds start at fresh random points; fresh points are moved first by
    :func:`output_diversified`).  Each round attacks, per case, the union of its disjuncts
    (margin ``min_k`` over disjuncts) and one single disjunct in turn, the disjuncts taken in
    order of their smallest margin over the random samples.

    Parameters
    ----------
    network : Network
    spec : Spec
    time_limit_s : float or None -- wall-clock budget from the call (None: only ``deadline``)
    n_random : int -- random samples per case
    pgd_restarts, pgd_steps : int -- per PGD round
    seed : int -- everything is deterministic given the seed (up to where time runs out)
    use_onnxruntime : bool -- forwarded to :func:`dpllnn.validate.check_counterexample`
    deadline : float, optional -- ``time.monotonic()`` value; the earlier of the two limits holds
    starts : dict, optional -- ``{case index: [array (k_j, n_inputs) per disjunct j]}``: extra
        points (e.g. :func:`dpllnn.bounds.lower_bound_minimisers`) sampled with the random ones
        and used first, per disjunct, as PGD starts (measured: on mnist_fc 256x4 prop_6_0.05
        PGD from random points stalls at margin 0.03, from a CROWN minimiser it reaches -0.42)

    Returns
    -------
    Counterexample or None -- only counterexamples accepted by ``check_counterexample``.
    """
    limits = [] if deadline is None else [deadline]
    if time_limit_s is not None:
        limits.append(time.monotonic() + float(time_limit_s))
    if not limits:
        raise ValueError("falsify needs time_limit_s or deadline")
    end = min(limits)
    rng = np.random.default_rng(seed)
    cases = []  # per case: list of targets (C, d, groups, starts); the union first
    for ci0, case in enumerate(spec.cases):
        if case.is_empty:
            continue
        tl = []
        extra = (starts or {}).get(ci0)
        for j, disj in enumerate(case.disjuncts):
            if disj.C.shape[0] == 0:  # empty conjunction: any point of the box is unsafe
                cex = validate_candidate(network, spec, 0.5 * (case.lb + case.ub), case.lb, case.ub,
                                use_onnxruntime)
                if cex is not None:
                    return cex
                continue
            xs = None
            if extra is not None and j < len(extra) and extra[j] is not None and len(extra[j]):
                xs = np.clip(np.atleast_2d(np.asarray(extra[j], dtype=np.float64)),
                             case.lb, case.ub)
            tl.append((disj.C, disj.d, None, xs))
        if len(tl) > 1:
            groups = np.cumsum([0] + [t[0].shape[0] for t in tl[:-1]])
            xs = [t[3] for t in tl if t[3] is not None]
            tl.insert(0, (np.vstack([t[0] for t in tl]), np.concatenate([t[1] for t in tl]),
                          groups, np.vstack(xs) if xs else None))
        if tl:
            cases.append((case, tl))
    if not cases:
        return None

    def try_candidates(Xc, mc, case, k=4):
        for j in np.argsort(mc)[:k]:
            if mc[j] > 0 or time.monotonic() > end:
                break
            cex = validate_candidate(network, spec, Xc[j], case.lb, case.ub, use_onnxruntime)
            if cex is not None:
                return cex
        return None

    # ---- random sampling (uniform + centre + corners) ------------------------------------
    seeds = {}
    order = {}      # per case: the disjuncts' turns, smallest sampled margin first
    for ci, (case, tl) in enumerate(cases):
        if time.monotonic() > end:
            return None
        lb, ub = case.lb, case.ub
        own = [] if tl[0][3] is None else [tl[0][3]]
        sampled = []    # per target: its smallest margin over the samples
        X = np.vstack(own + [0.5 * (lb + ub)[None], _corners(rng, lb, ub, 64),
                             lb + rng.random((n_random, lb.shape[0])) * (ub - lb)])
        Y = network.forward(X)
        for ti, (C, d, groups, xs) in enumerate(tl):
            m = _target_margin(Y, C, d, groups)
            if ti == 0:
                cex = try_candidates(X, m, case)
                if cex is not None:
                    return cex
            best = X[np.argsort(m)[: max(pgd_restarts // 2, 1)]]
            seeds[ci, ti] = best if xs is None else np.vstack([xs, best])[:pgd_restarts]
            sampled.append(float(m.min()))
        # the union attack can stall on a disjunct whose violation it cannot reach while
        # another one's is near: give the single disjuncts their turns in order of their
        # smallest sampled margin, not in file order (oval21 cifar_base img1598: the violated
        # disjunct is the fifth of nine; in file order PGD reached it at 2.8 s of a 3 s budget)
        order[ci] = [0] + [1 + int(j) for j in np.argsort(sampled[1:], kind="stable")]

    # ---- PGD rounds: each round attacks every case's union and one of its disjuncts ------
    rnd = 0
    while time.monotonic() < end:
        for ci, (case, tl) in enumerate(cases):
            for ti in sorted({0, order[ci][rnd % len(tl)]}):
                if time.monotonic() > end:
                    return None
                C, d, groups, _ = tl[ti]
                lb, ub = case.lb, case.ub
                first = rnd == 0 or (ti > 0 and rnd < len(tl))
                X0 = _starts(rng, lb, ub, pgd_restarts, seeds[ci, ti] if first else None)
                # fresh starts are output-diversified (the seeds -- best samples, CROWN
                # minimisers -- stay as they are).  Measured on the 65 sat instances of ACAS Xu
                # (0.3 s each) and mnist_fc (3 s): found 56 with uniform starts, 59 with ODS in
                # every other round, 59 in every round in 3.2 s instead of 4.4 s
                k = seeds[ci, ti].shape[0] if first else 0
                X0[k:] = output_diversified(network, X0[k:], lb, ub, rng)
                y_c = network.forward(0.5 * (lb + ub))
                scale = 1.0 + float(np.max(np.abs(C @ y_c))) + float(np.max(np.abs(d)))
                bx, bm = _pgd(network, X0, lb, ub, C, d, pgd_steps, end,
                              stop_below=-_DEPTH_REL * scale, groups=groups)
                if bm.min() > 0:
                    continue
                # push the best candidates deeper with small steps before validating
                k = min(4, bx.shape[0])
                top = np.argsort(bm)[:k]
                sub_lb = np.maximum(lb, bx[top].min(0) - 0.01 * (ub - lb))
                sub_ub = np.minimum(ub, bx[top].max(0) + 0.01 * (ub - lb))
                px, pm = _pgd(network, bx[top], sub_lb, sub_ub, C, d, 20, end,
                              stop_below=-_DEPTH_REL * scale, groups=groups)
                cex = try_candidates(np.vstack([px, bx[top]]), np.concatenate([pm, bm[top]]),
                                     case, k=2 * k)
                if cex is not None:
                    return cex
        rnd += 1
    return None
