"""Slow, obviously-correct reference implementations used as test oracles.

Nothing in ``dpllnn`` imports this module.
"""
from __future__ import annotations

import numpy as np  # noqa: F401

# ---- section: bound oracles (loop-based interval / CROWN) --------------------------------
#
# Plain Python loops over lists of floats, no rounding margin, no early stop:
# the textbook algorithms.  Phase semantics as in dpllnn.bounds: +1 -> identity and lb clamped to
# 0, -1 -> zero and ub clamped to 0.  Each returns per-affine-layer lists of (lb, ub) lists, or
# None when some lb > ub (phases infeasible).


def _naive_relax(l, u, ph):
    """(kind, s, t, alpha): kind 0 identity, 1 zero, 2 unstable with chord s z + t, lower alpha z."""
    if ph == 1 or l >= 0:
        return 0, 1.0, 0.0, 1.0
    if ph == -1 or u <= 0:
        return 1, 0.0, 0.0, 0.0
    s = u / (u - l)
    return 2, s, -s * l, (1.0 if u > -l else 0.0)


def naive_ibp(network, lb, ub, phase=None):
    """Interval bounds of every affine layer (loops).  Returns list of (lb list, ub list) or None."""
    al, au = [float(v) for v in lb], [float(v) for v in ub]
    out, idx = [], 0
    L = len(network.affines) - 1
    for k, aff in enumerate(network.affines):
        lo, hi = [], []
        for j in range(aff.n_out):
            s_lo = s_hi = float(aff.b[j])
            for i in range(aff.n_in):
                w = float(aff.W[j, i])
                s_lo += w * (al[i] if w >= 0 else au[i])
                s_hi += w * (au[i] if w >= 0 else al[i])
            if k < L and phase is not None:
                if phase[idx + j] == 1:
                    s_lo = max(s_lo, 0.0)
                elif phase[idx + j] == -1:
                    s_hi = min(s_hi, 0.0)
            if s_lo > s_hi:
                return None
            lo.append(s_lo)
            hi.append(s_hi)
        out.append((lo, hi))
        if k < L:
            idx += aff.n_out
            al, au = [max(v, 0.0) for v in lo], [max(v, 0.0) for v in hi]
    return out


def _naive_backward(network, bounds, phases, k, coef, const, lb, ub):
    """min of coef . z_k + const, back-substituting through layers k..0 with the relaxations."""
    A = list(coef)
    c = float(const)
    for j in range(k, -1, -1):
        aff = network.affines[j]
        c += sum(A[r] * float(aff.b[r]) for r in range(aff.n_out))
        A = [sum(A[r] * float(aff.W[r, i]) for r in range(aff.n_out)) for i in range(aff.n_in)]
        if j == 0:
            break
        l_, u_ = bounds[j - 1]
        ph = phases[j - 1]
        for i in range(len(A)):
            kind, s, t, alpha = _naive_relax(l_[i], u_[i], ph[i])
            if kind == 1:
                A[i] = 0.0
            elif kind == 2:
                if A[i] >= 0:
                    A[i] *= alpha
                else:
                    c += A[i] * t
                    A[i] *= s
    return c + sum(A[i] * (float(lb[i]) if A[i] >= 0 else float(ub[i])) for i in range(len(A)))


def naive_crown(network, lb, ub, phase=None, C=None, d=None):
    """CROWN/DeepPoly with adaptive lower slope, every layer intersected with IBP of the
    previous layer, back-substitution only for neurons IBP leaves unstable (loops, no margin).  Returns (layers, obj_lower) with layers as in
    :func:`naive_ibp` (None if infeasible) and obj_lower a list (m,) or None."""
    L = len(network.affines) - 1
    sizes = [a.n_out for a in network.affines]
    phases, idx = [], 0
    for k in range(L + 1):
        n = sizes[k]
        phases.append([0] * n if (phase is None or k == L) else [int(p) for p in phase[idx:idx + n]])
        idx += n
    bounds = []
    al, au = [float(v) for v in lb], [float(v) for v in ub]
    for k, aff in enumerate(network.affines):
        lo, hi = [], []
        for j in range(aff.n_out):
            s_lo = s_hi = float(aff.b[j])
            for i in range(aff.n_in):
                w = float(aff.W[j, i])
                s_lo += w * (al[i] if w >= 0 else au[i])
                s_hi += w * (au[i] if w >= 0 else al[i])
            # refine by back-substitution only what IBP leaves undecided (all outputs), and only
            # the side the phase does not already fix
            if k > 0 and s_lo < s_hi and (k == L or (s_lo < 0 < s_hi)):
                e = [0.0] * aff.n_out
                if phases[k][j] != 1:
                    e[j] = 1.0
                    s_lo = max(s_lo, _naive_backward(network, bounds, phases, k, e, 0.0, lb, ub))
                if phases[k][j] != -1:
                    e[j] = -1.0
                    s_hi = min(s_hi, -_naive_backward(network, bounds, phases, k, e, 0.0, lb, ub))
            if phases[k][j] == 1:
                s_lo = max(s_lo, 0.0)
            elif phases[k][j] == -1:
                s_hi = min(s_hi, 0.0)
            if s_lo > s_hi:
                return None, None
            lo.append(s_lo)
            hi.append(s_hi)
        bounds.append((lo, hi))
        al, au = [max(v, 0.0) for v in lo], [max(v, 0.0) for v in hi]
    obj = None
    if C is not None:
        obj = [_naive_backward(network, bounds, phases, L, [float(v) for v in C[r]], -float(d[r]), lb, ub)
               for r in range(len(C))]
    return bounds, obj


# ---- section: exact decision oracle (exhaustive phase enumeration + LP) -------------------
#
# Formulation deliberately different from dpllnn.lp.CellLP: one LP variable per input, per
# pre-activation and per output, linked by equality constraints (no composed matrices), solved with
# scipy.optimize.linprog.  Phases: +1 active (z >= 0, a = z), -1 inactive (z <= 0, a = 0).


def cell_margin(network, lb, ub, phase, C, d):
    """Minimum over the cell of ``t = max_i (C @ y - d)_i``.

    Parameters
    ----------
    network : dpllnn.network.Network
    lb, ub : ndarray, shape (n_inputs,)
    phase : ndarray, shape (n_relus,), entries +1 / -1
    C : ndarray, shape (m, n_outputs), m >= 1; d : ndarray, shape (m,)

    Returns
    -------
    (t, x) -- ``t = inf`` and ``x = None`` when the cell (within the box) is empty
    """
    from scipy.optimize import linprog

    phase = np.asarray(phase).reshape(-1)
    C = np.atleast_2d(np.asarray(C, dtype=float))
    d = np.asarray(d, dtype=float).reshape(-1)
    n_in = network.n_inputs
    sizes = network.hidden_sizes
    n_out = network.n_outputs
    # variable layout: x | z_1 | ... | z_L | y | t
    offs = [n_in]
    for s in sizes:
        offs.append(offs[-1] + s)
    y0 = offs[-1]
    tv = y0 + n_out
    nv = tv + 1
    A_eq, b_eq, A_ub, b_ub = [], [], [], []
    prev_off, prev_n, prev_act = 0, n_in, np.ones(n_in)
    targets = [(offs[k], sizes[k]) for k in range(len(sizes))] + [(y0, n_out)]
    pos = 0
    for k, aff in enumerate(network.affines):
        off, n = targets[k]
        for j in range(n):
            row = np.zeros(nv)
            row[off + j] = 1.0
            for i in range(prev_n):
                row[prev_off + i] -= aff.W[j, i] * prev_act[i]
            A_eq.append(row)
            b_eq.append(aff.b[j])
        if k < len(sizes):
            act = np.zeros(n)
            for j in range(n):
                row = np.zeros(nv)
                if phase[pos + j] > 0:
                    row[off + j] = -1.0
                    act[j] = 1.0
                else:
                    row[off + j] = 1.0
                A_ub.append(row)
                b_ub.append(0.0)
            pos += n
            prev_off, prev_n, prev_act = off, n, act
    for i in range(C.shape[0]):
        row = np.zeros(nv)
        row[y0:y0 + n_out] = C[i]
        row[tv] = -1.0
        A_ub.append(row)
        b_ub.append(d[i])
    cost = np.zeros(nv)
    cost[tv] = 1.0
    bounds = [(lb[i], ub[i]) for i in range(n_in)] + [(None, None)] * (nv - n_in)
    res = linprog(cost, A_ub=np.array(A_ub), b_ub=np.array(b_ub), A_eq=np.array(A_eq),
                  b_eq=np.array(b_eq), bounds=bounds, method="highs")
    if res.status == 2:
        return float("inf"), None
    if res.status != 0:
        raise RuntimeError(f"linprog failed: {res.message}")
    return float(res.x[tv]), np.clip(res.x[:n_in], lb, ub)


def all_phases(n_relus):
    """Every complete phase pattern, as int8 arrays of +1 / -1 (2**n_relus of them)."""
    for bits in range(2 ** n_relus):
        yield np.array([1 if (bits >> j) & 1 else -1 for j in range(n_relus)], dtype=np.int8)


def exhaustive_margin(network, case, disjunct, return_point=False):
    """``min over the box of max_i (C @ N(x) - d)_i``, exactly (up to LP tolerances).

    Enumerates all ``2**n_relus`` cells (keep ``n_relus <= 12``).  ``<= 0`` means the disjunct is
    reachable in the case's box.  With ``return_point`` returns ``(margin, x)``.
    """
    assert network.n_relus <= 14, "exhaustive oracle is for tiny networks"
    best, best_x = float("inf"), None
    for phase in all_phases(network.n_relus):
        t, x = cell_margin(network, case.lb, case.ub, phase, disjunct.C, disjunct.d)
        if t < best:
            best, best_x = t, x
    return (best, best_x) if return_point else best


def exhaustive_decide(network, spec):
    """Ground truth for tiny networks: ``("sat", x)`` or ``("unsat", None)``.

    ``sat`` iff some case's disjunct has exhaustive margin ``<= 0``; ``x`` is the minimising point
    (it may fail exact validation when the margin is within LP tolerance of 0: generate test
    properties with ``abs(margin) > 1e-6``, see :func:`spec_margins`).
    """
    for case in spec.cases:
        if np.any(case.lb > case.ub):
            continue
        for disj in case.disjuncts:
            t, x = exhaustive_margin(network, case, disj, return_point=True)
            if t <= 0:
                return "sat", x
    return "unsat", None


def spec_margins(network, spec):
    """Exhaustive margins of every (case, disjunct), flattened in order."""
    return [exhaustive_margin(network, c, dj) for c in spec.cases for dj in c.disjuncts]


def random_network(rng, n_in=2, hidden=(4, 4), n_out=2, scale=1.0):
    """A random tiny :class:`dpllnn.network.Network` (Gaussian weights / sqrt(fan-in))."""
    from dpllnn.network import Affine, Network

    sizes = [n_in, *hidden, n_out]
    affs = [Affine(rng.normal(size=(sizes[k + 1], sizes[k])) * scale / np.sqrt(sizes[k]),
                   rng.normal(size=sizes[k + 1]) * 0.5 * scale) for k in range(len(sizes) - 1)]
    return Network(affs)


def random_spec(rng, network, n_cases=1, n_disjuncts=2, max_rows=2):
    """A random property: boxes inside [-1, 1]^n, disjuncts whose thresholds are set from sampled
    outputs so that some are reachable and some are not."""
    from dpllnn.spec import Case, Disjunct, Spec

    n = network.n_inputs
    cases = []
    for _ in range(n_cases):
        centre = rng.uniform(-1, 1, n)
        half = rng.uniform(0.05, 1.0, n)
        lb, ub = centre - half, centre + half
        Y = network.forward(lb + rng.random((256, n)) * (ub - lb))
        disjs = []
        for _ in range(n_disjuncts):
            m = int(rng.integers(1, max_rows + 1))
            C = rng.normal(size=(m, network.n_outputs))
            proj = Y @ C.T
            q = rng.uniform(-10, 8)   # percentile; below 0 -> threshold under the sampled minimum
            lo, hi = proj.min(0), proj.max(0)
            d = np.percentile(proj, max(q, 0), axis=0) + min(q, 0) / 100 * (hi - lo)
            disjs.append(Disjunct(C, d))
        cases.append(Case(lb, ub, disjs))
    return Spec(cases, n, network.n_outputs)


def one_case_problem(seed):
    """A seeded one-case problem small enough for the exhaustive oracle (1-3 disjuncts, 2-6
    inputs, at most 10 hidden neurons): ``(network, spec)``."""
    rng = np.random.default_rng(1000 + seed)
    hidden = [(4, 4), (3, 3, 2), (6, 4), (5,)][seed % 4]
    net = random_network(rng, n_in=int(rng.integers(2, 7)), hidden=hidden, n_out=3)
    spec = random_spec(rng, net, n_cases=1, n_disjuncts=int(rng.integers(1, 4)))
    return net, spec


def small_margin_problem(seed, n_in=5, hidden=(3, 3, 3), rel=1e-3):
    """Two input boxes, one row ``c @ y <= d`` set ``rel`` x the sampled output range below the
    exact minimum of ``c @ y`` over both boxes: unsat by a small margin (exhaustive oracle), the
    kind of property input splitting alone can stall on.  Returns ``(network, spec, margin)``."""
    from dpllnn.spec import Case, Disjunct, Spec

    rng = np.random.default_rng(seed)
    net = random_network(rng, n_in=n_in, hidden=hidden, n_out=2)
    boxes = []
    for _ in range(2):
        c, h = rng.uniform(-1, 1, n_in), rng.uniform(0.2, 1.0, n_in)
        boxes.append((c - h, c + h))
    C = rng.normal(size=(1, 2))
    probe = Disjunct(C, np.zeros(1))
    lowest = min(exhaustive_margin(net, Case(lb, ub, [probe]), probe) for lb, ub in boxes)
    X = np.vstack([lb + rng.random((500, n_in)) * (ub - lb) for lb, ub in boxes])
    d = lowest - rel * (float(np.ptp(net.forward(X) @ C.T)) + 1e-9)
    spec = Spec([Case(lb, ub, [Disjunct(C, np.array([d]))]) for lb, ub in boxes], n_in, 2)
    return net, spec, lowest - d
