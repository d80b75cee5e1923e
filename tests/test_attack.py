"""Falsification: gradients, counterexamples found and validated, box and time limits respected."""
from __future__ import annotations

import time

import numpy as np
import pytest

from dpllnn.attack import falsify, falsify_box, margin_and_grad, network_gradient, snap_float32
from dpllnn.network import Affine, Network
from dpllnn.spec import Case, Disjunct, Spec
from dpllnn.validate import check_counterexample

from naive import exhaustive_decide, random_network, random_spec, spec_margins


def spike_network(c=(0.3137, 0.6221), k=50.0):
    """y0 = 1 - k * |x - c|_1 (four ReLUs), y1 = 0: unsafe region ``y0 >= 0.5`` is tiny."""
    c = np.asarray(c)
    W0 = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    b0 = np.array([-c[0], c[0], -c[1], c[1]])
    W1 = np.vstack([-k * np.ones((1, 4)), np.zeros((1, 4))])
    b1 = np.array([1.0, 0.0])
    return Network([Affine(W0, b0), Affine(W1, b1)])


def spike_spec(threshold=0.5, lb=(0.0, 0.0), ub=(1.0, 1.0)):
    # unsafe: y0 >= threshold  <=>  -y0 <= -threshold; a second, unreachable disjunct first
    never = Disjunct(np.array([[0.0, 1.0]]), np.array([-1.0]))        # y1 <= -1: impossible
    spike = Disjunct(np.array([[-1.0, 0.0]]), np.array([-threshold]))
    return Spec([Case(np.array(lb), np.array(ub), [never, spike])], 2, 2)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    for _ in range(5):
        net = random_network(rng, 4, (8, 6), 3)
        X = rng.normal(size=(7, 4))
        c = rng.normal(size=3)
        G = network_gradient(net, X, c)
        assert G.shape == X.shape
        h = 1e-6
        for i in range(4):
            e = np.zeros(4)
            e[i] = h
            fd = ((net.forward(X + e) - net.forward(X - e)) @ c) / (2 * h)
            np.testing.assert_allclose(G[:, i], fd, rtol=1e-4, atol=1e-6)
        # per-row weights and single-point input
        Cs = rng.normal(size=(7, 3))
        G2 = network_gradient(net, X, Cs)
        for r in range(7):
            np.testing.assert_allclose(G2[r], network_gradient(net, X[r], Cs[r]))


def test_margin_and_grad_consistent():
    rng = np.random.default_rng(1)
    net = random_network(rng, 3, (5,), 4)
    C, d = rng.normal(size=(3, 4)), rng.normal(size=3)
    X = rng.normal(size=(10, 3))
    m, g = margin_and_grad(net, X, C, d)
    np.testing.assert_allclose(m, Disjunct(C, d).margin(net.forward(X)))
    assert g.shape == X.shape


def test_falsify_finds_tiny_unsafe_region():
    net, spec = spike_network(), spike_spec()
    cex = falsify(net, spec, time_limit_s=2.0, n_random=16, use_onnxruntime=False, seed=3)
    assert cex is not None
    assert spec.cases[0].contains(cex.x)
    assert cex.disjunct == 1
    assert check_counterexample(net, spec, cex.x, use_onnxruntime=False) is not None
    assert np.abs(cex.x - [0.3137, 0.6221]).sum() <= 0.01


def test_falsify_box_stays_in_box():
    net = spike_network()
    lb, ub = np.array([0.5, 0.5]), np.array([0.9, 0.7])   # spike centre outside this box
    x, m = falsify_box(net, lb, ub, np.array([[-1.0, 0]]), np.array([-0.5]), seed=0, steps=40,
                       restarts=6)
    assert np.all(x >= lb) and np.all(x <= ub)
    assert m == pytest.approx(-(1 - 50 * np.abs(x - [0.3137, 0.6221]).sum()) + 0.5)
    assert m > 0   # unreachable here


def test_falsify_unsat_returns_none_and_respects_time():
    net = spike_network()
    spec = spike_spec(threshold=1.0 + 1e-3)  # the peak value is exactly 1
    t0 = time.monotonic()
    assert falsify(net, spec, time_limit_s=0.3, use_onnxruntime=False) is None
    assert time.monotonic() - t0 < 0.3 + 0.15
    t0 = time.monotonic()
    assert falsify(net, spec, time_limit_s=10.0, deadline=time.monotonic() + 0.2,
                   use_onnxruntime=False) is None
    assert time.monotonic() - t0 < 0.2 + 0.15


def test_falsify_deterministic():
    net, spec = spike_network(), spike_spec()
    a = falsify(net, spec, time_limit_s=2.0, n_random=16, use_onnxruntime=False, seed=5)
    b = falsify(net, spec, time_limit_s=2.0, n_random=16, use_onnxruntime=False, seed=5)
    np.testing.assert_array_equal(a.x, b.x)


def test_snap_float32_inside_box():
    rng = np.random.default_rng(2)
    lb = rng.normal(size=50)
    ub = lb + rng.random(50) * 1e-3
    x = lb + rng.random(50) * (ub - lb)
    xs = snap_float32(x, lb, ub)
    assert np.all(xs >= lb) and np.all(xs <= ub)
    wide = (ub - lb) > 1e-5
    assert np.all(xs[wide].astype(np.float32).astype(np.float64) == xs[wide])


def test_falsify_agrees_with_exhaustive_oracle():
    """Never a wrong sat; finds the clear sat cases on random tiny networks."""
    rng = np.random.default_rng(7)
    n_sat = n_unsat = 0
    for it in range(25):
        net = random_network(rng, 3, (3, 3), 3)
        spec = random_spec(rng, net, n_cases=2, n_disjuncts=2)
        margins = spec_margins(net, spec)
        if min(abs(m) for m in margins) < 1e-6:
            continue
        truth, _ = exhaustive_decide(net, spec)
        cex = falsify(net, spec, time_limit_s=0.1, use_onnxruntime=False, seed=it)
        if cex is not None:
            assert truth == "sat"
            assert check_counterexample(net, spec, cex.x, use_onnxruntime=False) is not None
            n_sat += 1
        else:
            n_unsat += truth == "unsat"
            assert truth == "unsat" or min(margins) > -1e-3, "missed a clear counterexample"
    assert n_sat >= 5


def test_falsify_acasxu_prop2(bench_root):
    onnx_load = pytest.importorskip("dpllnn.io.onnx_load")
    vnnlib = pytest.importorskip("dpllnn.io.vnnlib")
    folder = bench_root / "vnncomp2021" / "acasxu"
    net = onnx_load.load_onnx(folder / "ACASXU_run2a_1_2_batch_2000.onnx")
    spec = vnnlib.parse_vnnlib(folder / "prop_2.vnnlib")
    cex = falsify(net, spec, time_limit_s=10.0, seed=0)
    assert cex is not None
    assert check_counterexample(net, spec, cex.x, use_onnxruntime=True) is not None


def test_union_margin_groups():
    rng = np.random.default_rng(4)
    net = random_network(rng, 3, (6,), 4)
    C1, d1 = rng.normal(size=(2, 4)), rng.normal(size=2)
    C2, d2 = rng.normal(size=(1, 4)), rng.normal(size=1)
    X = rng.normal(size=(30, 3))
    m, g = margin_and_grad(net, X, np.vstack([C1, C2]), np.concatenate([d1, d2]),
                           groups=np.array([0, 2]))
    m1, g1 = margin_and_grad(net, X, C1, d1)
    m2, g2 = margin_and_grad(net, X, C2, d2)
    np.testing.assert_allclose(m, np.minimum(m1, m2))
    np.testing.assert_allclose(g, np.where((m1 <= m2)[:, None], g1, g2))


def test_falsify_uses_given_starts():
    # a spike so narrow that neither sampling nor zero-step PGD meets it; the start given for the
    # spike disjunct (index 1) is inside it
    net, spec = spike_network(k=1e4), spike_spec()
    kw = dict(time_limit_s=0.5, n_random=16, pgd_restarts=4, pgd_steps=0, use_onnxruntime=False)
    assert falsify(net, spec, **kw) is None
    cex = falsify(net, spec, starts={0: [None, np.array([[0.3137, 0.6221]])]}, **kw)
    assert cex is not None and check_counterexample(net, spec, cex.x, use_onnxruntime=False)


def test_lower_bound_minimisers_are_the_minimising_vertices():
    # all hidden neurons stably active on the box: the network is affine there, CROWN is exact,
    # and the minimiser of each row must be a vertex attaining the minimum over all 2^n vertices
    from dpllnn.bounds import compute_bounds, lower_bound_minimisers, pack
    rng = np.random.default_rng(3)
    n = 4
    net = random_network(rng, n, (6, 5), 3)
    for aff in net.affines[:-1]:
        aff.b[:] = np.abs(aff.W).sum(1) * 20.0 + 1.0
    lb, ub = -np.ones(n), np.ones(n)
    C, d = rng.normal(size=(5, 3)), rng.normal(size=5)
    packed = pack(net)
    lbd = compute_bounds(packed, lb, ub, None, "crown", C=C, d=d)
    assert lbd.n_unstable == 0
    X = lower_bound_minimisers(packed, lb, ub, lbd, C, d)
    assert X.shape == (5, n) and np.all((X == lb) | (X == ub))
    corners = np.array([[ub[i] if (k >> i) & 1 else lb[i] for i in range(n)] for k in range(2 ** n)])
    vals = net.forward(corners) @ C.T - d
    got = np.einsum("rj,rj->r", net.forward(X), C) - d
    assert np.allclose(got, vals.min(0), rtol=1e-9, atol=1e-9)


def test_output_diversified_stays_in_box_and_moves_points():
    from dpllnn.attack import output_diversified
    rng = np.random.default_rng(5)
    net = random_network(rng, 6, (10, 8), 4)
    lb, ub = -np.ones(6), np.linspace(0.5, 2.0, 6)
    X = lb + rng.random((20, 6)) * (ub - lb)
    Y = output_diversified(net, X, lb, ub, np.random.default_rng(0), steps=5)
    assert Y.shape == X.shape and np.all(Y >= lb) and np.all(Y <= ub)
    assert np.any(np.abs(Y - X) > 0)


def test_single_disjunct_turns_follow_the_sampled_margins(monkeypatch):
    """The rounds attack the single disjuncts smallest sampled margin first, not in file order:
    with disjuncts ``-y0 <= d_j`` (margin ``-y0 - d_j``: the same samples, shifted) the order
    is that of decreasing ``d_j``."""
    import dpllnn.attack as attack
    rng = np.random.default_rng(11)
    net = random_network(rng, 3, (6,), 2)
    ds = [-103.0, -100.0, -102.0, -101.0]       # unreachable: y0 stays far below 100
    spec = Spec([Case(np.zeros(3), np.ones(3),
                      [Disjunct(np.array([[-1.0, 0.0]]), np.array([d])) for d in ds])], 3, 2)
    seen = []

    def fake_pgd(network, X0, lb, ub, C, d, steps, end, stop_below=-np.inf, groups=None):
        if C.shape[0] == 1:
            seen.append(float(d[0]))
        return X0, np.full(X0.shape[0], 1.0)   # never a success: the rounds go on

    monkeypatch.setattr(attack, "_pgd", fake_pgd)
    assert falsify(net, spec, time_limit_s=0.3, use_onnxruntime=False) is None
    assert seen[:4] == sorted(ds, reverse=True)
    assert seen[4:8] == seen[:4]                # and the same order in every later sweep
