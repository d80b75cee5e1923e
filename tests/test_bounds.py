"""Bound propagation: soundness (hypothesis), ordering, LP optimum, naive oracles, incremental,
batched, and the benchmark networks.  ``DPLLNN_BOUNDS_EXAMPLES`` scales the hypothesis budget
(the NUMBA_DISABLE_JIT run in test_bounds_nojit.py sets it low)."""
from __future__ import annotations

import os
import platform
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpllnn.bounds import (alpha_crown, batch_crown, batch_objective_bounds, compute_bounds,
                           objective_bounds, pack)
from dpllnn.bounds.scores import babsr_scores, backward_coefficients
from dpllnn.network import Affine, Network

from naive import naive_crown, naive_ibp

N_EX = int(os.environ.get("DPLLNN_BOUNDS_EXAMPLES", "150"))
HSET = settings(max_examples=N_EX, deadline=None, suppress_health_check=list(HealthCheck))
METHODS = ["ibp", "symbolic", "crown", "alpha"]


def random_net(rng, n_in, hidden, n_out, scale=1.0):
    sizes = [n_in] + list(hidden) + [n_out]
    affs = [Affine(rng.normal(size=(sizes[i + 1], sizes[i])) * scale / np.sqrt(sizes[i]),
                   rng.normal(size=sizes[i + 1]) * 0.5) for i in range(len(sizes) - 1)]
    return Network(affs)


def forward_ld(net, X):
    """Pre-activations (concatenated) and outputs in extended precision (far below our margin)."""
    a = np.asarray(X, dtype=np.longdouble)
    zs = []
    for k, aff in enumerate(net.affines):
        z = a @ aff.W.T.astype(np.longdouble) + aff.b.astype(np.longdouble)
        if k < len(net.affines) - 1:
            zs.append(z)
            a = np.maximum(z, 0)
    return np.concatenate(zs, axis=1), z


def sample_box(rng, xl, xu, n):
    X = rng.uniform(xl, xu, size=(n, xl.shape[0]))
    k = min(2 ** xl.shape[0], 64)
    V = np.where(rng.random((k, xl.shape[0])) < 0.5, xl, xu)
    return np.vstack([X, V, (xl + xu) / 2])


@st.composite
def problems(draw):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    n_in = draw(st.integers(1, 4))
    hidden = draw(st.lists(st.integers(1, 7), min_size=1, max_size=3))
    n_out = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["none", "consistent", "random"]))
    rng = np.random.default_rng(seed)
    net = random_net(rng, n_in, hidden, n_out, scale=draw(st.sampled_from([0.5, 1.0, 3.0])))
    c = rng.normal(size=n_in)
    r = rng.uniform(0.01, 2.0, size=n_in)
    xl, xu = c - r, c + r
    if draw(st.booleans()):
        xu[0] = xl[0]  # a degenerate box dimension
    X = sample_box(rng, xl, xu, 1500)
    Z, Y = forward_ld(net, X)
    phase = np.zeros(net.n_relus, dtype=np.int8)
    pick = rng.random(net.n_relus) < rng.uniform(0.1, 0.6)
    if mode == "consistent":
        z0 = Z[rng.integers(len(Z))]
        phase[pick] = np.where(z0[pick] >= 0, 1, -1)
    elif mode == "random":
        phase[pick] = rng.choice(np.array([-1, 1], dtype=np.int8), size=pick.sum())
    C = rng.normal(size=(2, n_out))
    d = rng.normal(size=2)
    return net, xl, xu, phase, C, d, X, Z, Y


def consistent(Z, phase):
    ok = np.ones(len(Z), dtype=bool)
    ok &= np.all(Z[:, phase == 1] >= 0, axis=1)
    ok &= np.all(Z[:, phase == -1] <= 0, axis=1)
    return ok


def check_sound(res, net, phase, C, d, Z, Y):
    ok = consistent(Z, phase)
    if res.infeasible:
        assert not ok.any(), "phases reported infeasible but a sampled point satisfies them"
        assert np.all(res.obj_lower == np.inf)
        return
    Zc, Yc = Z[ok], Y[ok]
    assert np.all(Zc >= res.lb.astype(np.longdouble)) and np.all(Zc <= res.ub.astype(np.longdouble))
    assert np.all(Yc >= res.output_lb.astype(np.longdouble))
    assert np.all(Yc <= res.output_ub.astype(np.longdouble))
    obj = Yc @ C.T.astype(np.longdouble) - d.astype(np.longdouble)
    assert np.all(obj >= res.obj_lower.astype(np.longdouble))
    assert np.all(obj <= res.obj_upper.astype(np.longdouble))
    # masks: stable neurons really have the sign on every consistent sample
    assert np.all(Zc[:, res.stable_active & (res.phase == 0)] >= 0)
    assert np.all(Zc[:, res.stable_inactive & (res.phase == 0)] <= 0)
    assert not np.any(res.stable_active & res.stable_inactive)
    assert np.all(res.stable_active | res.stable_inactive | res.unstable)


@HSET
@given(problems())
def test_soundness_all_methods(prob):
    net, xl, xu, phase, C, d, X, Z, Y = prob
    P = pack(net)
    for m in METHODS:
        res = compute_bounds(P, xl, xu, phase, m, C=C, d=d)
        check_sound(res, net, phase, C, d, Z, Y)
    res = compute_bounds(P, xl, xu, phase, "alpha", C=C, d=d, iters=4, intermediate=True,
                         intermediate_iters=4)
    check_sound(res, net, phase, C, d, Z, Y)


@HSET
@given(problems())
def test_ordering_crown_ibp_alpha(prob):
    net, xl, xu, phase, C, d, X, Z, Y = prob
    P = pack(net)
    ibp = compute_bounds(P, xl, xu, phase, "ibp", C=C, d=d)
    crown = compute_bounds(P, xl, xu, phase, "crown", C=C, d=d)
    alpha = compute_bounds(P, xl, xu, phase, "alpha", C=C, d=d, iters=5)
    if ibp.infeasible:
        assert crown.infeasible
        return
    if crown.infeasible:
        return
    assert np.all(crown.z_lb >= ibp.z_lb) and np.all(crown.z_ub <= ibp.z_ub)
    assert np.all(crown.obj_lower >= ibp.obj_lower) and np.all(crown.obj_upper <= ibp.obj_upper)
    assert np.all(alpha.obj_lower >= crown.obj_lower)
    alpha_i = compute_bounds(P, xl, xu, phase, "alpha", C=C, d=d, iters=3, intermediate=True,
                             intermediate_iters=3)
    if not alpha_i.infeasible:
        assert np.all(alpha_i.obj_lower >= crown.obj_lower)
        assert np.all(alpha_i.z_lb >= crown.z_lb) and np.all(alpha_i.z_ub <= crown.z_ub)
    lo, _ = objective_bounds(P, xl, xu, crown, C, d, alpha=alpha.alpha)
    assert np.all(lo <= alpha.obj_lower)


@HSET
@given(problems())
def test_incremental_equals_full(prob):
    net, xl, xu, phase, C, d, X, Z, Y = prob
    P = pack(net)
    L = P.n_layers
    k = int(np.random.default_rng(len(Z)).integers(0, L + 1))
    cut = P.zoff[k]
    ph0 = phase.copy()
    ph0[cut:] = 0
    for m in ("ibp", "crown"):
        prev = compute_bounds(P, xl, xu, ph0, m)
        inc = compute_bounds(P, xl, xu, phase, m, start_layer=k, prev=prev, C=C, d=d)
        full = compute_bounds(P, xl, xu, phase, m, C=C, d=d)
        assert inc.infeasible == full.infeasible
        if not full.infeasible:
            np.testing.assert_array_equal(inc.z_lb, full.z_lb)
            np.testing.assert_array_equal(inc.z_ub, full.z_ub)
            np.testing.assert_array_equal(inc.obj_lower, full.obj_lower)
        check_sound(inc, net, phase, C, d, Z, Y)


@HSET
@given(problems())
def test_outer_bounds_intersected_sound_and_tighter(prob):
    """``compute_bounds(outer=parent)``: a child node (more phases) bounded incrementally and
    intersected with its parent's alpha-CROWN bounds is sound on the child's samples and never
    looser than the parent's bounds."""
    net, xl, xu, phase, C, d, X, Z, Y = prob
    P = pack(net)
    L = P.n_layers
    k = int(np.random.default_rng(len(Z) + 1).integers(0, L + 1))
    parent_ph = phase.copy()
    parent_ph[P.zoff[k]:] = 0
    parent = compute_bounds(P, xl, xu, parent_ph, "alpha", C=C, d=d, iters=3, intermediate=True,
                            intermediate_iters=3)
    if parent.infeasible:
        return
    child = compute_bounds(P, xl, xu, phase, "crown", start_layer=k, prev=parent, outer=parent,
                           C=C, d=d)
    check_sound(child, net, phase, C, d, Z, Y)
    if child.infeasible:
        return
    assert np.all(child.z_lb >= parent.z_lb) and np.all(child.z_ub <= parent.z_ub)


@HSET
@given(problems())
def test_rebound_hidden_with_root_slopes_sound(prob):
    """The root's optimised hidden slopes re-used under a phase assignment (rebound_hidden):
    sound on the samples consistent with the phases, never looser than the bounds it starts
    from, and an empty region is only reported when no sample is consistent."""
    from dpllnn.bounds.alpha import rebound_hidden
    net, xl, xu, phase, C, d, X, Z, Y = prob
    P = pack(net)
    root = compute_bounds(P, xl, xu, None, "alpha", C=C, d=d, iters=3, intermediate=True,
                          intermediate_iters=5)
    assert root.hidden_alpha is not None
    node = compute_bounds(P, xl, xu, phase, "crown", outer=root, C=C, d=d)
    if node.infeasible:
        return
    lo0, hi0 = node.z_lb.copy(), node.z_ub.copy()
    bad = rebound_hidden(P, node, root.hidden_alpha)
    ok = consistent(Z, phase)
    if bad >= 0:
        assert not ok.any(), "rebound_hidden reported an empty region that holds a sample"
        return
    assert np.all(node.z_lb >= lo0) and np.all(node.z_ub <= hi0)
    Zc = Z[ok].astype(np.longdouble)
    assert np.all(Zc >= node.lb.astype(np.longdouble)) and np.all(Zc <= node.ub.astype(np.longdouble))


def _triangle_lp_min(net, lbd, xl, xu, c_row, d_row):
    """min c.y - d over the triangle relaxation with lbd's intermediate bounds (highspy)."""
    import highspy
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    inf = highspy.kHighsInf
    n_in = net.n_inputs
    nv = [0]

    def add(lo, hi):
        h.addVar(lo, hi)
        nv[0] += 1
        return nv[0] - 1

    prev = [add(float(xl[i]), float(xu[i])) for i in range(n_in)]
    L = len(net.affines) - 1
    for k, aff in enumerate(net.affines):
        lo, hi = lbd.layer(k)
        zs = [add(float(lo[j]), float(hi[j])) for j in range(aff.n_out)]
        for j in range(aff.n_out):  # z_j - W a = b
            idx = [zs[j]] + prev
            val = [1.0] + [-float(w) for w in aff.W[j]]
            h.addRow(float(aff.b[j]), float(aff.b[j]), len(idx), np.array(idx, dtype=np.int32), np.array(val))
        if k == L:
            ys = zs
            break
        ph = lbd.z_phase[P_zoff(lbd, k)]
        acts = []
        for j in range(aff.n_out):
            l, u, p = float(lo[j]), float(hi[j]), int(ph[j])
            if p == 1 or l >= 0:
                acts.append(zs[j])
            elif p == -1 or u <= 0:
                acts.append(add(0.0, 0.0))
            else:
                a = add(0.0, inf)
                h.addRow(0.0, inf, 2, np.array([a, zs[j]], dtype=np.int32), np.array([1.0, -1.0]))  # a >= z
                s = u / (u - l)  # a <= s z - s l
                h.addRow(-inf, -s * l, 2, np.array([a, zs[j]], dtype=np.int32), np.array([1.0, -s]))
                acts.append(a)
        prev = acts
    h.changeColsCost(len(ys), np.array(ys, dtype=np.int32), np.array([float(v) for v in c_row]))
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:  # the phases are contradictory: empty set
        return np.inf
    assert status == highspy.HighsModelStatus.kOptimal
    return h.getInfo().objective_function_value - d_row


def P_zoff(lbd, k):
    z = lbd.packed.zoff
    return slice(z[k], z[k + 1])


@settings(max_examples=max(N_EX // 3, 10), deadline=None, suppress_health_check=list(HealthCheck))
@given(problems())
def test_lp_optimum_not_below_crown(prob):
    net, xl, xu, phase, C, d, X, Z, Y = prob
    P = pack(net)
    for method in ("crown", "alpha"):
        res = compute_bounds(P, xl, xu, phase, method, C=C, d=d)
        if res.infeasible:
            return
        for r in range(C.shape[0]):
            lp = _triangle_lp_min(net, res, xl, xu, C[r], d[r])
            assert lp >= res.obj_lower[r] - 1e-6 * (1 + abs(lp))


@settings(max_examples=max(N_EX // 5, 10), deadline=None, suppress_health_check=list(HealthCheck))
@given(problems())
def test_against_naive_oracles(prob):
    net, xl, xu, phase, C, d, X, Z, Y = prob
    P = pack(net)
    tol = lambda v: 1e-9 * (1 + np.abs(v))  # noqa: E731
    ref = naive_ibp(net, xl, xu, phase)
    res = compute_bounds(P, xl, xu, phase, "ibp")
    if ref is None:
        assert res.infeasible
    elif not res.infeasible:
        lo = np.concatenate([np.array(a) for a, _ in ref])
        hi = np.concatenate([np.array(b) for _, b in ref])
        assert np.all(res.z_lb <= lo) and np.all(res.z_ub >= hi)
        assert np.all(lo - res.z_lb <= tol(lo)) and np.all(res.z_ub - hi <= tol(hi))
    ref, obj = naive_crown(net, xl, xu, phase, C, d)
    res = compute_bounds(P, xl, xu, phase, "crown", C=C, d=d, early_stop=False)
    if ref is None:
        assert res.infeasible
        return
    if res.infeasible:  # only possible by margin at a touching bound
        return
    lo = np.concatenate([np.array(a) for a, _ in ref])
    hi = np.concatenate([np.array(b) for _, b in ref])
    assert np.all(np.abs(res.z_lb - lo) <= tol(lo)) and np.all(np.abs(res.z_ub - hi) <= tol(hi))
    n = P.n_relus
    ylo, yhi = lo[n:], hi[n:]
    ibp_obj = np.array([d_ * 0 + np.sum(np.where(c >= 0, c * ylo, c * yhi)) - d_ for c, d_ in zip(C, d)])
    expect = np.maximum(np.array(obj), ibp_obj)
    assert np.all(np.abs(res.obj_lower - expect) <= tol(expect))


@HSET
@given(problems())
def test_batch_matches_single(prob):
    net, xl, xu, phase, C, d, X, Z, Y = prob
    P = pack(net)
    rng = np.random.default_rng(len(X))
    B = 5
    t = rng.random((B, xl.size))
    w = rng.random((B, xl.size)) * (1 - t)
    lbs, ubs = xl + t * (xu - xl), xl + (t + w) * (xu - xl)
    for m in ("symbolic", "crown", "ibp"):
        low, unst = batch_objective_bounds(P, lbs, ubs, C, d, method=m, return_unstable=True)
        for i in range(B):
            single = compute_bounds(P, lbs[i], ubs[i], None, m, C=C, d=d)
            np.testing.assert_allclose(low[i], single.obj_lower, rtol=1e-12, atol=1e-12)
            assert unst[i] == single.n_unstable
            ok = np.all((X >= lbs[i]) & (X <= ubs[i]), axis=1)
            if ok.any():
                obj = Y[ok] @ C.T.astype(np.longdouble) - d
                assert np.all(obj >= low[i])


@HSET
@given(problems(), st.booleans())
def test_batch_crown_equals_single_and_contains_samples(prob, parallel):
    """batch_crown per box == compute_bounds("crown") + objective_bounds (same kernels), under
    shared phases too (infeasible boxes -> +inf), and every consistent sample in a sub-box lies
    within that box's hidden, output and objective bounds."""
    net, xl, xu, phase, C, d, X, Z, Y = prob
    P = pack(net)
    rng = np.random.default_rng(len(X) + 1)
    B = 6
    t = rng.random((B, xl.size))
    w = rng.random((B, xl.size)) * (1 - t)
    lbs, ubs = xl + t * (xu - xl), xl + (t + w) * (xu - xl)
    lbs[0], ubs[0] = xl, xu
    for ph in (None, phase):
        low, unst, zl, zu, A = batch_crown(P, lbs, ubs, C, d, phase=ph, parallel=parallel,
                                           coeffs=True)
        assert A.shape == (B, C.shape[0], xl.size)
        phz = np.zeros(net.n_relus, dtype=np.int8) if ph is None else ph
        for i in range(B):
            single = compute_bounds(P, lbs[i], ubs[i], ph, "crown")
            if single.infeasible:
                assert np.all(low[i] == np.inf) and unst[i] == -1
                continue
            lo_s, _ = objective_bounds(P, lbs[i], ubs[i], single, C, d)
            assert np.array_equal(low[i], lo_s)
            assert np.array_equal(zl[i], single.z_lb) and np.array_equal(zu[i], single.z_ub)
            assert unst[i] == single.n_unstable
            inside = np.all((X >= lbs[i]) & (X <= ubs[i]), axis=1) & consistent(Z, phz)
            if inside.any():
                Zi, Yi = Z[inside], Y[inside]
                assert np.all(Zi >= zl[i][:net.n_relus]) and np.all(Zi <= zu[i][:net.n_relus])
                assert np.all(Yi >= zl[i][net.n_relus:]) and np.all(Yi <= zu[i][net.n_relus:])
                obj = Yi @ C.T.astype(np.longdouble) - d.astype(np.longdouble)
                assert np.all(obj >= low[i])
    low2 = batch_objective_bounds(P, lbs, ubs, C, d, method="crown")
    assert np.array_equal(low2, batch_crown(P, lbs, ubs, C, d)[0])
    # inherited bounds: every sub-box intersects the whole box's bounds; still sound, never looser
    low, unst, zl, zu, _ = batch_crown(P, lbs, ubs, C, d, phase=phase)
    if unst[0] >= 0:
        low3, unst3, zl3, zu3, _ = batch_crown(P, lbs, ubs, C, d, phase=phase,
                                               prev_lb=np.repeat(zl[:1], B, 0),
                                               prev_ub=np.repeat(zu[:1], B, 0))
        for i in range(B):
            if unst3[i] < 0:
                continue
            assert unst[i] >= 0
            assert np.all(zl3[i] >= zl[0]) and np.all(zu3[i] <= zu[0])
            inside = np.all((X >= lbs[i]) & (X <= ubs[i]), axis=1) & consistent(Z, phase)
            if inside.any():
                Zi, Yi = Z[inside], Y[inside]
                assert np.all(Zi >= zl3[i][:net.n_relus]) and np.all(Zi <= zu3[i][:net.n_relus])
                obj = Yi @ C.T.astype(np.longdouble) - d.astype(np.longdouble)
                assert np.all(obj >= low3[i])


def test_phase_semantics_and_infeasible():
    # z0 = x, z1 = -x on x in [-1, 2]; y = z0 + z1 relu'd
    net = Network([Affine(np.array([[1.0], [-1.0]]), np.zeros(2)), Affine(np.array([[1.0, 1.0]]), np.zeros(1))])
    P = pack(net)
    r = compute_bounds(P, [-1.0], [2.0], np.array([1, 0], dtype=np.int8), "crown", C=[[1.0]], d=[0.0])
    assert not r.infeasible and r.lb[0] == 0.0 and r.ub[0] >= 2.0
    assert r.stable_active[0] and r.unstable[1]
    r = compute_bounds(P, [0.5], [2.0], np.array([-1, 0], dtype=np.int8), "crown", C=[[1.0]], d=[0.0])
    assert r.infeasible and r.conflict == 0 and r.obj_lower[0] == np.inf
    for m in METHODS:
        r = compute_bounds(P, [0.5], [2.0], np.array([0, 1], dtype=np.int8), m, C=[[1.0]], d=[0.0])
        assert r.infeasible, m
    r = compute_bounds(P, [-1.0], [2.0], None, "symbolic")
    assert r.n_unstable == 2


def test_scores_and_coefficients():
    rng = np.random.default_rng(3)
    net = random_net(rng, 3, [6, 6], 2)
    P = pack(net)
    lbd = compute_bounds(P, -np.ones(3), np.ones(3), None, "crown")
    lam, low = backward_coefficients(P, lbd, [[1.0, -1.0]], [0.0])
    assert lam.shape == (1, P.n_relus)
    ref, _ = objective_bounds(P, -np.ones(3), np.ones(3), lbd, [[1.0, -1.0]], [0.0])
    assert low[0] <= ref[0] + 1e-12
    s = babsr_scores(P, lbd, [1.0, -1.0])
    assert s.shape == (P.n_relus,) and np.all(s >= 0) and np.all(s[~lbd.unstable] == 0)


def test_bad_inputs():
    P = pack(random_net(np.random.default_rng(0), 2, [3], 1))
    with pytest.raises(ValueError):
        compute_bounds(P, [0.0], [1.0])
    with pytest.raises(ValueError):
        compute_bounds(P, [0.0, np.nan], [1.0, 1.0])
    with pytest.raises(ValueError):
        compute_bounds(P, [0.0, 0.0], [1.0, 1.0], method="nope")
    with pytest.raises(ValueError):
        compute_bounds(P, [0.0, 0.0], [1.0, 1.0], start_layer=1)


def test_alpha_improves_on_wide_box():
    rng = np.random.default_rng(7)
    net = random_net(rng, 4, [20, 20], 3)
    P = pack(net)
    C, d = rng.normal(size=(3, 3)), np.zeros(3)
    cr = compute_bounds(P, -np.ones(4), np.ones(4), None, "crown", C=C, d=d)
    al = alpha_crown(P, -np.ones(4), np.ones(4), None, C, d, iters=30)
    assert np.all(al.obj_lower >= cr.obj_lower) and np.any(al.obj_lower > cr.obj_lower)


def _exact_forward(net, x):
    """Pre-activations and outputs in exact rational arithmetic (fractions)."""
    from fractions import Fraction
    a = [Fraction(float(v)) for v in x]
    zs = []
    for k, aff in enumerate(net.affines):
        z = [sum((Fraction(float(w)) * ai for w, ai in zip(aff.W[j], a)), Fraction(float(aff.b[j])))
             for j in range(aff.n_out)]
        if k < len(net.affines) - 1:
            zs.extend(z)
            a = [max(v, Fraction(0)) for v in z]
    return zs, z


@settings(max_examples=max(N_EX // 5, 10), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([1e-8, 1.0, 1e8]))
def test_margin_covers_rounding_exactly(seed, scale):
    """Cancellation-heavy weights (large, nearly opposite) and a narrow box: every bound must
    contain the exact rational value at sampled float points (no tolerance)."""
    from fractions import Fraction
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(4, 3)) * scale
    W1[1] = -W1[0] * (1 + 1e-15)  # near-cancellation downstream
    W2 = rng.normal(size=(4, 4)) * 1e6
    W2[:, 1] = W2[:, 0] * (1 - 3e-16)
    net = Network([Affine(W1, rng.normal(size=4) * scale), Affine(W2, rng.normal(size=4)),
                   Affine(rng.normal(size=(2, 4)), rng.normal(size=2))])
    P = pack(net)
    c = rng.normal(size=3) * 10
    r = np.abs(rng.normal(size=3)) * 10.0 ** rng.integers(-12, 1)
    xl, xu = c - r, c + r
    X = sample_box(rng, xl, xu, 20)
    C, d = np.array([[1.0, -1.0]]), np.array([0.25])
    for m in METHODS:
        res = compute_bounds(P, xl, xu, None, m, C=C, d=d)
        assert not res.infeasible
        for x in X:
            zs, y = _exact_forward(net, x)
            for i, z in enumerate(zs):
                assert Fraction(float(res.lb[i])) <= z <= Fraction(float(res.ub[i])), (m, i)
            for i, v in enumerate(y):
                assert Fraction(float(res.output_lb[i])) <= v <= Fraction(float(res.output_ub[i]))
            obj = y[0] - y[1] - Fraction(0.25)
            assert Fraction(float(res.obj_lower[0])) <= obj <= Fraction(float(res.obj_upper[0])), m


def test_warmup_runs():
    from dpllnn.bounds import warmup
    assert warmup() >= 0.0


def test_kernel_threads_change_no_bound():
    """Row-parallel kernels (``set_kernel_threads``, lent cores in parallel search) give exactly
    the serial results: CROWN bounds, objective bounds and re-bounding with alpha slopes, on a
    network wide enough for every backward pass to be split."""
    from dpllnn.bounds.alpha import rebound_hidden
    from dpllnn.bounds.threads import kernel_threads, set_kernel_threads
    from naive import random_network
    rng = np.random.default_rng(11)
    net = random_network(rng, 6, (48, 48, 48), 40)
    P = pack(net)
    lb, ub = -np.ones(6), np.ones(6)
    C = rng.normal(size=(40, 40))
    d = rng.normal(size=40)
    phase = np.zeros(P.n_relus, dtype=np.int8)
    phase[[3, 60]] = [1, -1]
    base = alpha_crown(P, lb, ub, phase, C, d, iters=3, intermediate=True, intermediate_iters=3)
    results = []
    try:
        for nt in (1, 2):
            assert set_kernel_threads(nt) == nt and kernel_threads() == nt
            lbd = compute_bounds(P, lb, ub, phase, "crown")
            lo, up = objective_bounds(P, lb, ub, lbd, C, d)
            al = alpha_crown(P, lb, ub, phase, C, d, iters=3, intermediate=True,
                             intermediate_iters=3)
            rb = compute_bounds(P, lb, ub, phase, "crown")
            bad = rebound_hidden(P, rb, base.hidden_alpha, 1)
            results.append((lbd.z_lb, lbd.z_ub, lo, up, al.z_lb, al.z_ub, al.obj_lower,
                            rb.z_lb, rb.z_ub, bad))
        assert int(np.count_nonzero(lbd.unstable)) >= 32   # the passes were split
    finally:
        set_kernel_threads(1)
    # equal up to BLAS's summation order (its blocking depends on the number of rows); each
    # is sound on its own (the kernels' margins bound any order's rounding)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    xs = rng.uniform(lb, ub, size=(3000, 6))
    z = np.concatenate([np.asarray(p).reshape(len(xs), -1) for p in net.pre_activations(xs)],
                       axis=1)
    inside = np.all([(z[:, j] >= 0) == (s > 0) for j, s in ((3, 1), (60, -1))], axis=0)
    zz = z[inside][:, :P.n_relus]
    assert inside.sum() > 100
    for r in results:
        for lo_, hi_ in ((r[0], r[1]), (r[4], r[5]), (r[7], r[8])):
            assert np.all(zz >= lo_[:P.n_relus]) and np.all(zz <= hi_[:P.n_relus])


@pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"),
                    reason="the tbb wheel (a dependency) is installed on Linux x86_64 only")
def test_tbb_threading_layer_in_forked_worker():
    """The bound kernels run on numba's TBB layer (dpllnn.bounds.threads preloads the ``tbb``
    wheel's runtime; workqueue's launches are ~35x slower), and a worker forked after the parent
    started the layer still runs the row-parallel kernels, with the serial results."""
    import multiprocessing as mp

    import numba

    from dpllnn.bounds.threads import TBB_PATH, set_kernel_threads
    from naive import random_network
    if os.environ.get("NUMBA_THREADING_LAYER"):
        pytest.skip("NUMBA_THREADING_LAYER is set explicitly")
    assert TBB_PATH is not None and os.path.exists(TBB_PATH)
    rng = np.random.default_rng(5)
    net = random_network(rng, 6, (48, 48, 48), 10)
    P = pack(net)
    lb, ub = -np.ones(6), np.ones(6)
    serial = compute_bounds(P, lb, ub, None, "crown")
    try:
        set_kernel_threads(2)
        compute_bounds(P, lb, ub, None, "crown")   # the parent starts the layer
        assert numba.threading_layer() == "tbb"
        ctx = mp.get_context("fork")
        q = ctx.Queue()

        def child():
            b = compute_bounds(P, lb, ub, None, "crown")
            q.put((b.z_lb, b.z_ub))

        proc = ctx.Process(target=child)
        proc.start()
        got = q.get(timeout=120)
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        set_kernel_threads(1)
    np.testing.assert_allclose(got[0], serial.z_lb, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], serial.z_ub, rtol=1e-12, atol=1e-12)
