"""The graph bound engine (dpllnn.bounds.graph): sampled soundness on random CNNs / ResNets,
CROWN never looser than IBP, agreement with the dense engine on chains (and on CNN chains
lowered to dense), incremental ``start_layer``, split objectives and minimisers."""
from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dpllnn.bounds import compute_bounds, objective_lower_split, pack
from dpllnn.bounds.graph.api import (graph_bounds, graph_lower_bound_minimisers,
                                     graph_objective_bounds, graph_objective_lower_split)
from dpllnn.bounds.graph.gpack import pack_graph
from dpllnn.model.graph import Graph, InputOp, Node, Relu
from dpllnn.model.lower import graph_from_network, network_from_graph
from dpllnn.model.ops import Concat, Conv, Dense, Pad, Reshape, Scale, Slice, Sum, Transpose
from dpllnn.network import Affine, Network

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_models as gm  # noqa: E402

seeds = st.integers(0, 2 ** 32 - 1)
N_SAMPLES = 300


# ---- random graphs built from the ops -----------------------------------------------------------
class _B:
    def __init__(self, shape):
        self.nodes = [Node(InputOp(tuple(shape)), (), "input")]

    def add(self, op, *ins):
        self.nodes.append(Node(op, tuple(ins), f"n{len(self.nodes)}"))
        return len(self.nodes) - 1

    def shape(self, v):
        return self.nodes[v].shape


def _conv(b, rng, x, cout, k=3, stride=1, pad=1):
    s = b.shape(x)
    cin = s[1]
    W = rng.normal(0, 1 / np.sqrt(cin * k * k), size=(cout, cin, k, k))
    return b.add(Conv(W, rng.uniform(-0.5, 0.5, cout), s, (stride, stride), (1, 1),
                      (pad,) * 4), x)


def random_graph(rng, kind=None) -> Graph:
    """A tiny random CNN / ResNet built straight from the ops (every op kind appears in some)."""
    kind = kind or ["cnn", "resnet", "mixed"][int(rng.integers(0, 3))]
    C, H = int(rng.integers(1, 3)), int(rng.integers(3, 6))
    b = _B((1, C, H, H))
    x = 0
    if rng.random() < 0.5:       # input normalisation
        x = b.add(Scale(rng.uniform(0.5, 2.0, (C, 1, 1)), rng.uniform(-0.5, 0.5, (C, 1, 1)),
                        b.shape(x)), x)
    x = b.add(Relu(b.shape(_conv(b, rng, x, 2))), len(b.nodes) - 1)
    if kind == "cnn":
        x = _conv(b, rng, x, int(rng.integers(1, 4)), stride=int(rng.integers(1, 3)))
        x = b.add(Relu(b.shape(x)), x)
    elif kind == "resnet":
        for _ in range(int(rng.integers(1, 3))):
            c = b.shape(x)[1]
            h = _conv(b, rng, b.add(Relu(b.shape(_conv(b, rng, x, c))), len(b.nodes) - 1), c)
            s = b.add(Sum((1.0, float(rng.choice([1.0, -1.0, 0.5]))), b.shape(h)), h, x)
            x = b.add(Relu(b.shape(s)), s)
    else:
        s = b.shape(x)
        a = _conv(b, rng, x, 2, k=1, pad=0)
        sc = b.add(Scale(rng.normal(size=(s[1], 1, 1)), rng.normal(size=s[1:]), s), x)
        cat = b.add(Concat((b.shape(a), b.shape(sc)), 1), a, sc)
        sh = b.shape(cat)
        sl = b.add(Slice(sh, ((0, 1, 1), (0, sh[1], 2), (0, sh[2], 1), (1, sh[3], 2))), cat)
        pd = b.add(Pad(b.shape(sl), (0, 0, 1, 0, 0, 1, 0, 1)), sl)
        x = b.add(Relu(b.shape(pd)), pd)
        x = b.add(Transpose(b.shape(x), (0, 2, 3, 1)), x)
    n = int(np.prod(b.shape(x)))
    f = b.add(Reshape(b.shape(x), (1, n)), x)
    if rng.random() < 0.5:
        f = b.add(Dense(rng.normal(0, 1 / np.sqrt(n), (4, n)), rng.uniform(-.5, .5, 4),
                        (1, n)), f)
        f = b.add(Relu(b.shape(f)), f)
        n = 4
    y = b.add(Dense(rng.normal(0, 1 / np.sqrt(n), (3, n)), rng.uniform(-.5, .5, 3), (1, n)), f)
    return Graph(b.nodes, y)


_ONNX_BUILDERS = [
    lambda r: gm.conv_net(r, in_shape=(1, 4, 4), channels=(2, 2)),
    lambda r: gm.conv_net(r, in_shape=(2, 5, 5), channels=(2,), stride=2, groups=2),
    lambda r: gm.conv1d_net(r, in_shape=(2, 6), channels=(2, 2)),
    lambda r: gm.resnet(r, in_shape=(1, 3, 3), width=2, blocks=1),
    lambda r: gm.resnet(r, in_shape=(1, 4, 4), width=2, blocks=1, downsample=True),
    lambda r: gm.bn_conv_net(r, in_shape=(1, 4, 4), channels=(2,)),
    lambda r: gm.pool_net(r, in_shape=(1, 4, 4), kind="max"),
    lambda r: gm.concat_net(r, in_shape=(1, 3, 3), branches=(1, 2)),
]


def onnx_graph(rng):
    from dpllnn.io.onnx_load import network_or_graph
    m = _ONNX_BUILDERS[int(rng.integers(0, len(_ONNX_BUILDERS)))](rng)
    g = network_or_graph(m, "test")
    assert isinstance(g, Graph)
    return g


# ---- regions and samples ------------------------------------------------------------------------
def random_box(rng, n):
    c = rng.uniform(-1, 1, n)
    r = rng.uniform(0, 0.5, n) * (rng.random(n) < 0.9)      # some degenerate coordinates
    return c - r, c + r


def samples(rng, xl, xu, k=N_SAMPLES):
    n = xl.size
    U = rng.random((k, n))
    V = (rng.random((k // 3, n)) < 0.5).astype(float)        # random vertices
    E = np.vstack([U, V, np.zeros((1, n)), np.ones((1, n))])
    return xl + E * (xu - xl)


def pre_and_out(g, X):
    """Pre-activations (flat, ReLU order) and outputs, float64."""
    Z = g.pre_activations(X)
    Y = g.forward(X)
    return (np.hstack(Z) if Z else np.zeros((X.shape[0], 0))), Y


def random_phase(rng, g, xl, xu, frac=0.3):
    """Phases of a random subset of neurons: mostly taken from a point of the box (so the
    region is non-empty), sometimes random (often infeasible)."""
    ph = np.zeros(g.n_relus, np.int8)
    sel = rng.random(g.n_relus) < frac
    if rng.random() < 0.8:
        x0 = xl + rng.random(xl.size) * (xu - xl)
        z0 = pre_and_out(g, x0[None])[0][0]
        ph[sel] = np.where(z0[sel] >= 0, 1, -1)
        return ph, x0
    ph[sel] = rng.choice([-1, 1], int(sel.sum()))
    return ph, None


def keep(Z, ph):
    ok = np.ones(Z.shape[0], bool)
    ok &= np.all((Z >= 0) | (ph != 1), axis=1)
    ok &= np.all((Z <= 0) | (ph != -1), axis=1)
    return ok


def assert_sound(lbd, Z, Y, C, d, ph, x0=None):
    """Every kept sample (phases respected) inside the bounds, with no slack."""
    k = keep(Z, ph)
    if x0 is not None:
        assert not lbd.infeasible, "a point of the region exists"
    if lbd.infeasible:
        assert not k.any(), "infeasible, yet a sample satisfies the phases"
        return
    V = np.hstack([Z, Y])[k]
    assert np.all(V >= lbd.z_lb), np.min(V - lbd.z_lb)
    assert np.all(V <= lbd.z_ub), np.max(V - lbd.z_ub)
    if C is not None:
        O = Y[k] @ C.T - d
        assert np.all(O >= lbd.obj_lower), np.min(O - lbd.obj_lower)
        assert np.all(O <= lbd.obj_upper), np.max(O - lbd.obj_upper)


def _objective(rng, g, zero_d=False):
    m = int(rng.integers(1, 4))
    C = rng.normal(size=(m, g.n_outputs))
    d = np.zeros(m) if zero_d else rng.normal(size=m)
    return C, d


def check_region(g, rng, methods=("ibp", "crown")):
    gp = pack_graph(g)
    xl, xu = random_box(rng, g.n_inputs)
    ph, x0 = random_phase(rng, g, xl, xu)
    X = samples(rng, xl, xu)
    Z, Y = pre_and_out(g, X)
    C, d = _objective(rng, g)
    out = {}
    for meth in methods:
        lbd = graph_bounds(gp, xl, xu, ph, meth, C=C, d=d)
        assert_sound(lbd, Z, Y, C, d, ph, x0)
        lb0 = graph_bounds(gp, xl, xu, ph, meth, C=C, d=np.zeros_like(d))
        assert_sound(lb0, Z, Y, C, np.zeros_like(d), ph, x0)
        out[meth] = lbd
    return gp, xl, xu, ph, out, (Z, Y, C, d, x0)


# ---- sampled soundness --------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(seed=seeds)
def test_sound_random_graphs(seed):
    rng = np.random.default_rng(seed)
    check_region(random_graph(rng), rng)


@settings(max_examples=30, deadline=None)
@given(seed=seeds)
def test_sound_onnx_models(seed):
    rng = np.random.default_rng(seed)
    check_region(onnx_graph(rng), rng)


def _assert_not_looser(ibp, crown, ulps=1e-14):
    """CROWN inside IBP; ``ulps``: relative slack for the rounding of IBP recomputed from
    CROWN's tighter intervals (see test_crown_not_looser_than_ibp_exact)."""
    if ibp.infeasible:
        assert crown.infeasible
        return
    if crown.infeasible:
        return
    tl, tu = ulps * (1 + np.abs(ibp.z_lb)), ulps * (1 + np.abs(ibp.z_ub))
    assert np.all(crown.z_lb >= ibp.z_lb - tl), np.min(crown.z_lb - ibp.z_lb)
    assert np.all(crown.z_ub <= ibp.z_ub + tu), np.max(crown.z_ub - ibp.z_ub)
    assert np.all(crown.obj_lower >= ibp.obj_lower - ulps * (1 + np.abs(ibp.obj_lower)))


@settings(max_examples=30, deadline=None)
@given(seed=seeds)
def test_crown_not_looser_than_ibp(seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng) if rng.random() < 0.7 else onnx_graph(rng)
    _, _, _, _, out, _ = check_region(g, rng)
    _assert_not_looser(out["ibp"], out["crown"])


# ---- against the dense engine -------------------------------------------------------------------
def random_network(rng):
    sizes = [int(v) for v in rng.integers(1, 7, size=int(rng.integers(2, 5)))]
    return Network([Affine(rng.normal(size=(sizes[i + 1], sizes[i])),
                           rng.normal(size=sizes[i + 1])) for i in range(len(sizes) - 1)])


def _agree(a, b, tol):
    assert a.infeasible == b.infeasible
    if a.infeasible:
        assert a.conflict == b.conflict
        return
    for x, y in ((a.z_lb, b.z_lb), (a.z_ub, b.z_ub), (a.obj_lower, b.obj_lower)):
        assert np.all(np.abs(x - y) <= tol * (1 + np.abs(y))), np.max(np.abs(x - y))


@settings(max_examples=30, deadline=None)
@given(seed=seeds)
def test_dense_chain_agrees(seed):
    rng = np.random.default_rng(seed)
    net = random_network(rng)
    g = graph_from_network(net)
    gp, P = pack_graph(g), pack(net)
    np.testing.assert_allclose(g.forward(np.eye(net.n_inputs)), net.forward(np.eye(net.n_inputs)),
                               rtol=1e-14, atol=1e-14)
    xl, xu = random_box(rng, net.n_inputs)
    ph, _ = random_phase(rng, g, xl, xu, frac=0.4)
    C, d = _objective(rng, g)
    for meth in ("ibp", "crown"):
        # no phases: the same bounds
        a = graph_bounds(gp, xl, xu, None, meth, C=C, d=d)
        b = compute_bounds(P, xl, xu, None, meth, C=C, d=d)
        _agree(a, b, 1e-9)
        a0 = graph_bounds(gp, xl, xu, None, meth, C=C)
        b0 = compute_bounds(P, xl, xu, None, meth, C=C)
        np.testing.assert_allclose(a0.obj_upper, b0.obj_upper, rtol=1e-9, atol=1e-9)
        if meth == "ibp":
            np.testing.assert_allclose(a.obj_upper, b.obj_upper, rtol=1e-9, atol=1e-9)
        # with phases
        a = graph_bounds(gp, xl, xu, ph, meth, C=C, d=d)
        b = compute_bounds(P, xl, xu, ph, meth, C=C, d=d)
        if meth == "ibp":
            _agree(a, b, 1e-9)
            continue
        # CROWN: the graph engine also back-substitutes neurons with a fixed phase (the dense
        # one keeps their clamped IBP bounds), so it may be tighter from there on
        if b.infeasible:
            assert a.infeasible
            continue
        if a.infeasible:
            continue
        tol = 1e-9
        assert np.all(a.z_lb >= b.z_lb - tol * (1 + np.abs(b.z_lb)))
        assert np.all(a.z_ub <= b.z_ub + tol * (1 + np.abs(b.z_ub)))
        assert np.all(a.obj_lower >= b.obj_lower - tol * (1 + np.abs(b.obj_lower)))
        fixed = np.flatnonzero(ph)
        upto = gp.zoff[gp.layer_of(int(fixed[0]))[0] + 1] if fixed.size else gp.n_z
        free = np.ones(gp.n_z, bool)
        free[fixed] = False
        free[upto:] = False
        for x, y in ((a.z_lb, b.z_lb), (a.z_ub, b.z_ub)):
            assert np.all((np.abs(x - y) <= tol * (1 + np.abs(y)))[free])
        if not fixed.size:
            _agree(a, b, tol)


def test_obj_upper_sign():
    """y = relu(x) on x in [0, 1] (one identity layer each side); C = [1], d = [-1]: C y - d
    ranges over [1, 2], so obj_upper must be >= 2."""
    net = Network([Affine(np.eye(1), np.zeros(1)), Affine(np.eye(1), np.zeros(1))])
    gp = pack_graph(graph_from_network(net))
    lbd = graph_bounds(gp, np.zeros(1), np.ones(1), None, "crown", C=np.eye(1),
                       d=np.array([-1.0]))
    assert lbd.obj_upper[0] >= 2.0
    _, up = graph_objective_bounds(gp, np.zeros(1), np.ones(1), lbd, np.eye(1), np.array([-1.0]))
    assert up[0] >= 2.0


# ---- CNN chains lowered to dense ---------------------------------------------------------------
_CHAINS = {
    "conv": lambda r: gm.conv_net(r, in_shape=(1, 5, 5), channels=(2, 3)),
    "conv_stride2_groups": lambda r: gm.conv_net(r, in_shape=(2, 5, 5), channels=(2, 2),
                                                 stride=2, groups=2),
    "pool_avg": lambda r: gm.pool_net(r, in_shape=(1, 5, 5), kind="avg", kernel=3, stride=2,
                                      pads=(1, 1, 1, 1), count_include_pad=0),
    "bn_conv": lambda r: gm.bn_conv_net(r, in_shape=(2, 4, 4), channels=(2, 2)),
    "nhwc": lambda r: gm.nhwc_net(r, in_shape=(4, 4, 1), channels=(2,)),
}


@pytest.mark.parametrize("name", sorted(_CHAINS))
def test_lowered_cnn_agrees(name):
    from dpllnn.io.onnx_load import network_or_graph
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    g = network_or_graph(_CHAINS[name](rng), name)
    net = network_from_graph(g)
    assert net.hidden_sizes == g.hidden_sizes
    X = rng.uniform(-1, 1, (20, g.n_inputs))
    np.testing.assert_allclose(net.forward(X), g.forward(X), rtol=1e-12, atol=1e-12)
    for zg, zn in zip(g.pre_activations(X), net.pre_activations(X)):
        np.testing.assert_allclose(zg, zn, rtol=1e-12, atol=1e-12)
    gp, P = pack_graph(g), pack(net)
    n_equal_stab = 0
    for _ in range(4):
        xl, xu = random_box(rng, g.n_inputs)
        xu = xl + 0.3 * (xu - xl)
        ph, x0 = random_phase(rng, g, xl, xu, frac=0.2)
        C, d = _objective(rng, g)
        Z, Y = pre_and_out(g, samples(rng, xl, xu, 100))
        for meth in ("ibp", "crown"):
            a = graph_bounds(gp, xl, xu, ph, meth, C=C, d=d)
            b = compute_bounds(P, xl, xu, ph, meth, C=C, d=d)
            assert_sound(a, Z, Y, C, d, ph, x0)
            assert_sound(b, Z, Y, C, d, ph, x0)
            # without phases (with them the graph engine's CROWN also tightens phase-fixed
            # neurons, which the dense one does not: see test_dense_chain_agrees)
            a = graph_bounds(gp, xl, xu, None, meth, C=C, d=d)
            b = compute_bounds(P, xl, xu, None, meth, C=C, d=d)
            n_equal_stab += _lowered_agree(gp, a, b, meth)
    assert n_equal_stab >= 1


def _lowered_agree(gp, a, b, meth, tol=1e-8):
    """Graph bounds ``a`` vs dense bounds ``b`` of the lowered chain (no phases); returns 1 if
    the CROWN comparison applied.

    IBP through a run's composed matrix is tighter than op by op (|M2 M1| <= |M2| |M1|), so the
    dense IBP bounds lie inside the graph's.  CROWN back-substitutes only neurons IBP leaves
    unstable and keeps IBP's bounds for the others (both engines), so where the two agree on
    which neurons are stable the relaxations coincide: unstable neurons, outputs and objective
    agree, and stable neurons inherit the IBP ordering."""
    assert not a.infeasible and not b.infeasible
    if meth == "ibp":
        sl = tol * (1 + np.abs(b.z_lb))
        assert np.all(b.z_lb >= a.z_lb - sl) and np.all(b.z_ub <= a.z_ub + sl)
        return 0
    st_a = (a.lb >= 0) | (a.ub <= 0)
    st_b = (b.lb >= 0) | (b.ub <= 0)
    if not np.array_equal(st_a, st_b):
        return 0
    sl = tol * (1 + np.abs(b.z_lb))
    assert np.all(b.z_lb >= a.z_lb - sl) and np.all(b.z_ub <= a.z_ub + sl)
    un = np.concatenate([~st_a, np.ones(gp.n_outputs, bool)])
    for x, y in ((a.z_lb, b.z_lb), (a.z_ub, b.z_ub)):
        assert np.all(np.abs(x - y)[un] <= (tol * (1 + np.abs(y)))[un])
    assert np.all(np.abs(a.obj_lower - b.obj_lower) <= tol * (1 + np.abs(b.obj_lower)))
    return 1


def test_network_from_graph_rejects_dag():
    rng = np.random.default_rng(1)
    from dpllnn.io.onnx_load import network_or_graph
    g = network_or_graph(gm.resnet(rng, in_shape=(1, 3, 3), width=2, blocks=1), "r")
    with pytest.raises(ValueError):
        network_from_graph(g)
    # a dense chain round-trips
    net = random_network(rng)
    net2 = network_from_graph(graph_from_network(net))
    for a, b in zip(net.affines, net2.affines):
        np.testing.assert_allclose(a.W, b.W, rtol=0, atol=0)
        np.testing.assert_allclose(a.b, b.b, rtol=0, atol=0)


# ---- start_layer --------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_start_layer(seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng) if rng.random() < 0.7 else onnx_graph(rng)
    gp = pack_graph(g)
    L = gp.n_layers
    xl, xu = random_box(rng, g.n_inputs)
    X = samples(rng, xl, xu)
    Z, Y = pre_and_out(g, X)
    C, d = _objective(rng, g, zero_d=True)
    x0 = X[int(rng.integers(0, X.shape[0]))]
    z0 = pre_and_out(g, x0[None])[0][0]
    sgn = np.where(z0 >= 0, 1, -1).astype(np.int8)
    parent = np.zeros(g.n_relus, np.int8)
    sel = rng.random(g.n_relus) < 0.2
    parent[sel] = sgn[sel]
    k = int(rng.integers(0, L + 1))
    child = parent.copy()
    # new phases only in ReLU nodes >= k (and, sometimes, also in earlier ones: start_layer
    # re-clamps them, but the bounds below k are then not recomputed)
    lo_new = gp.zoff[k] if rng.random() < 0.7 else 0
    add = (rng.random(g.n_relus) < 0.3) & (np.arange(g.n_relus) >= lo_new)
    child[add] = sgn[add]
    for meth in ("ibp", "crown"):
        prev = graph_bounds(gp, xl, xu, parent, meth, C=C, d=d)
        assert not prev.infeasible
        inc = graph_bounds(gp, xl, xu, child, meth, start_layer=k, prev=prev, C=C, d=d)
        assert_sound(inc, Z, Y, C, d, child, x0)
        if lo_new >= gp.zoff[k]:
            full = graph_bounds(gp, xl, xu, child, meth, C=C, d=d)
            assert not full.infeasible and not inc.infeasible
            np.testing.assert_array_equal(inc.z_lb, full.z_lb)
            np.testing.assert_array_equal(inc.z_ub, full.z_ub)
            np.testing.assert_array_equal(inc.obj_lower, full.obj_lower)


def test_start_layer_needs_prev():
    g = random_graph(np.random.default_rng(3), "cnn")
    gp = pack_graph(g)
    with pytest.raises(ValueError):
        graph_bounds(gp, np.zeros(g.n_inputs), np.ones(g.n_inputs), None, "crown", start_layer=1)


# ---- split objectives and minimisers ------------------------------------------------------------
def _child_clamped(lbd, j, s):
    """LayerBounds-like copy of ``lbd`` with neuron ``j`` fixed to phase ``s``: its bounds
    clamped by the phase (the rest of the sweep state unchanged)."""
    from dpllnn.bounds.graph.crown import SweepState
    gp = lbd.packed
    st0 = lbd.sweep
    k, i = gp.layer_of(j)
    p = gp.pre[k]
    lo, hi = list(st0.lo), list(st0.hi)
    lo[p], hi[p] = lo[p].copy(), hi[p].copy()
    if s > 0:
        lo[p].reshape(-1)[i] = max(lo[p].reshape(-1)[i], 0.0)
    else:
        hi[p].reshape(-1)[i] = min(hi[p].reshape(-1)[i], 0.0)
    phase = [q.copy() for q in st0.phase]
    phase[k][i] = s
    import copy
    out = copy.copy(lbd)
    out.sweep = SweepState(gp, lo, hi, st0.wa, phase)
    out.sweep._amax = dict(st0._amax)
    return out


@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_objective_lower_split(seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng) if rng.random() < 0.7 else onnx_graph(rng)
    gp = pack_graph(g)
    xl, xu = random_box(rng, g.n_inputs)
    X = samples(rng, xl, xu)
    Z, Y = pre_and_out(g, X)
    lbd = graph_bounds(gp, xl, xu, None, "crown")
    m = 6
    C = rng.normal(size=(m, g.n_outputs))
    d = rng.normal(size=m)
    idx = rng.integers(0, g.n_relus, size=m)
    sgn = rng.choice([-1, 1], size=m).astype(np.int8)
    low = graph_objective_lower_split(gp, xl, xu, lbd, C, d, idx, sgn)
    assert low.shape == (m,)
    for r in range(m):
        child = _child_clamped(lbd, int(idx[r]), int(sgn[r]))
        ref, _ = graph_objective_bounds(gp, xl, xu, child, C[r:r + 1], d[r:r + 1], upper=False)
        # both are the max of the backward pass and the parent's output-box bound
        assert abs(low[r] - ref[0]) <= 1e-9 * (1 + abs(ref[0]))
        # sound on the child region (its samples)
        z = Z[:, idx[r]]
        kept = (z >= 0) if sgn[r] > 0 else (z <= 0)
        O = Y[kept] @ C[r] - d[r]
        assert np.all(O >= low[r]), np.min(O - low[r])
    # the dense engine gives the same on a dense chain
    net = random_network(rng)
    gn, P = graph_from_network(net), pack(net)
    if net.n_relus:
        gpn = pack_graph(gn)
        xl, xu = random_box(rng, net.n_inputs)
        C = rng.normal(size=(m, net.n_outputs))
        idx = rng.integers(0, net.n_relus, size=m)
        lg = graph_bounds(gpn, xl, xu)
        a = graph_objective_lower_split(gpn, xl, xu, lg, C, d, idx, sgn)
        b = objective_lower_split(P, xl, xu, compute_bounds(P, xl, xu), C, d, idx, sgn)
        # the dense split bound is also intersected with the interval bound over the output
        # box; the graph one is not (see test_split_lower_takes_interval_bound)
        iv = graph_objective_bounds(gpn, xl, xu, lg, C, d, upper=False, crown=False)[0]
        np.testing.assert_allclose(np.maximum(a, iv), b, rtol=1e-9, atol=1e-9)


def test_split_lower_takes_interval_bound():
    """x in [-1, 1]; z = (x, x); y = relu(z_0).  Split on neuron 1 (+1): CROWN's lower bound of
    y is -1 (adaptive slope 1 on z_0), the interval bound over the output box is 0."""
    net = Network([Affine(np.ones((2, 1)), np.zeros(2)), Affine(np.array([[1.0, 0.0]]),
                                                                np.zeros(1))])
    gp, P = pack_graph(graph_from_network(net)), pack(net)
    xl, xu = -np.ones(1), np.ones(1)
    C, d, idx, sgn = np.eye(1), np.zeros(1), np.array([1]), np.array([1], np.int8)
    lg = graph_bounds(gp, xl, xu)
    dense = objective_lower_split(P, xl, xu, compute_bounds(P, xl, xu), C, d, idx, sgn)
    child = _child_clamped(lg, 1, 1)
    ref = graph_objective_bounds(gp, xl, xu, child, C, d, upper=False)[0]
    assert dense[0] >= -1e-12 and ref[0] >= -1e-12         # both 0 (the interval bound)
    got = graph_objective_lower_split(gp, xl, xu, lg, C, d, idx, sgn)
    assert abs(got[0] - ref[0]) <= 1e-9, (got, ref, dense)


@settings(max_examples=15, deadline=None)
@given(seed=seeds)
def test_minimisers_are_vertices(seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng)
    gp = pack_graph(g)
    xl, xu = random_box(rng, g.n_inputs)
    lbd = graph_bounds(gp, xl, xu, None, "crown")
    C = rng.normal(size=(4, g.n_outputs))
    V = graph_lower_bound_minimisers(gp, xl, xu, lbd, C)
    assert V.shape == (4, g.n_inputs)
    assert np.all((V == xl) | (V == xu))
    # the minimiser's objective is no lower than the CROWN lower bound (it is a point of the box)
    low, _ = graph_objective_bounds(gp, xl, xu, lbd, C, upper=False)
    O = np.einsum("ij,ij->i", g.forward(V), C)
    assert np.all(O >= low)


# ---- work skipped where it cannot tighten -------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(seed=seeds)
def test_output_crown_off_keeps_ibp_and_outer(seed):
    """``output_crown=False`` (search nodes that bound their objective rows directly): hidden
    bounds as with the output pass; output bounds sound and no looser than IBP or ``outer``."""
    rng = np.random.default_rng(seed)
    g = random_graph(rng)
    gp, xl, xu, ph, out, (Z, Y, C, d, x0) = check_region(g, rng)
    root = graph_bounds(gp, xl, xu)               # an outer set valid on a superset of the region
    full = graph_bounds(gp, xl, xu, ph, "crown", outer=root)
    lean = graph_bounds(gp, xl, xu, ph, "crown", outer=root, output_crown=False)
    assert_sound(lean, Z, Y, None, None, ph, x0)
    if full.infeasible:
        return
    assert not lean.infeasible      # the hidden bounds are the same, so the same contradiction
    h = g.n_relus
    np.testing.assert_array_equal(lean.z_lb[:h], full.z_lb[:h])
    np.testing.assert_array_equal(lean.z_ub[:h], full.z_ub[:h])
    ibp = out["ibp"]        # IBP from the IBP-only hidden bounds: lean's IBP starts tighter
    if not ibp.infeasible:
        assert np.all(lean.z_lb[h:] >= np.maximum(ibp.z_lb[h:], root.z_lb[h:]) - 1e-12)
        assert np.all(lean.z_ub[h:] <= np.minimum(ibp.z_ub[h:], root.z_ub[h:]) + 1e-12)


def _affine_range(f, xl, xu):
    """Exact range of an affine map ``f`` (rows of points -> rows of values) over a box: its
    matrix from unit steps, then centre +- |A| radius."""
    c, r = (xl + xu) / 2, (xu - xl) / 2
    f0 = f(c[None])[0]
    A = f(c[None] + np.eye(c.size)) - f0               # row i: the column of input i
    return f0 - np.abs(A).T @ r, f0 + np.abs(A).T @ r


@settings(max_examples=40, deadline=None)
@given(seed=seeds)
def test_interval_exact_first_layer_is_the_exact_range(seed):
    """The first pre-activation of every random graph is one Conv of the (possibly normalised)
    input box: it gets interval bounds only, and they are its exact range (to rounding)."""
    from dpllnn.bounds.graph.gpack import interval_exact_nodes
    rng = np.random.default_rng(seed)
    g = random_graph(rng)
    assert g.relu_input(0) in interval_exact_nodes(g)
    xl, xu = random_box(rng, g.n_inputs)
    lbd = graph_bounds(pack_graph(g), xl, xu)
    n0 = g.hidden_sizes[0]
    lo, hi = _affine_range(lambda X: g.pre_activations(X)[0], xl, xu)
    scale = 1.0 + np.abs(lo) + np.abs(hi)
    assert np.all(lbd.z_lb[:n0] <= lo) and np.all(lbd.z_ub[:n0] >= hi)
    assert np.all(lo - lbd.z_lb[:n0] <= 1e-9 * scale), np.max(lo - lbd.z_lb[:n0])
    assert np.all(lbd.z_ub[:n0] - hi <= 1e-9 * scale), np.max(lbd.z_ub[:n0] - hi)


def test_interval_exact_stops_at_relu_and_joins():
    """Only single-input ops fed by the box through box-preserving ops qualify: not a Conv
    after a ReLU, not a Sum of two branches (the same coordinates may meet twice), and not a
    Dense fed by a Dense (the composite is not one affine map of a box)."""
    from dpllnn.bounds.graph.gpack import interval_exact_nodes
    rng = np.random.default_rng(0)
    b = _B((1, 1, 3, 3))
    s = b.add(Scale(np.full((1, 1, 1), 2.0), np.zeros((1, 1, 1)), b.shape(0)), 0)
    c1 = _conv(b, rng, s, 1)
    r1 = b.add(Relu(b.shape(c1)), c1)
    c2 = _conv(b, rng, r1, 1)
    c3 = _conv(b, rng, 0, 1)
    sm = b.add(Sum((1.0, 1.0), b.shape(c2)), c2, c3)
    f = b.add(Reshape(b.shape(sm), (1, 9)), sm)
    d1 = b.add(Dense(rng.normal(size=(2, 9)), np.zeros(2), (1, 9)), f)
    r2 = b.add(Relu(b.shape(d1)), d1)
    f0 = b.add(Reshape(b.shape(0), (1, 9)), 0)
    d2 = b.add(Dense(rng.normal(size=(2, 9)), np.zeros(2), (1, 9)), f0)
    d3 = b.add(Dense(rng.normal(size=(2, 2)), np.zeros(2), (1, 2)), d2)
    y = b.add(Sum((1.0, 1.0), (1, 2)), r2, d3)
    g = Graph(b.nodes, y)
    assert interval_exact_nodes(g) == {s, c1, c3, f0, d2}
    # the nodes behind a ReLU (hidden-layer alpha-CROWN's targets): the ReLU's consumers, the
    # join that one of them feeds, and everything after; not the branch from the input alone
    from dpllnn.bounds.graph.gpack import after_a_relu_nodes, pack_graph
    assert after_a_relu_nodes(g) == {c2, sm, f, d1, r2, y}
    assert pack_graph(g).after_a_relu == after_a_relu_nodes(g)


@settings(max_examples=15, deadline=None)
@given(seed=seeds)
def test_row_chunks_do_not_change_bounds(seed):
    """One row per chunk (the smallest memory budget) gives the bounds of the default budget,
    for CROWN's sweeps and for alpha-CROWN's per-row slopes."""
    rng = np.random.default_rng(seed)
    g = random_graph(rng)
    xl, xu = random_box(rng, g.n_inputs)
    ph, _ = random_phase(rng, g, xl, xu)
    C, d = _objective(rng, g)
    big, small = pack_graph(g), pack_graph(g, row_chunk_bytes=1)
    for kw in ({}, {"alpha_iters": 3}):
        a = graph_bounds(big, xl, xu, ph, "crown", C=C, d=d, **kw)
        b = graph_bounds(small, xl, xu, ph, "crown", C=C, d=d, **kw)
        assert a.infeasible == b.infeasible
        if not a.infeasible:
            np.testing.assert_allclose(b.z_lb, a.z_lb, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(b.z_ub, a.z_ub, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(b.obj_lower, a.obj_lower, rtol=1e-12, atol=1e-12)


def test_row_chunk_budget_must_be_positive():
    with pytest.raises(ValueError, match="row_chunk_bytes"):
        pack_graph(random_graph(np.random.default_rng(0)), row_chunk_bytes=0)


def test_row_chunk_budget_reaches_the_engine_from_settings():
    """``pack(network, row_chunk_bytes)`` sets a graph's budget (and leaves dense chains as they
    are); verify hands ``SearchSettings.graph_row_chunk_bytes`` down and its verdict does not
    depend on it."""
    import dataclasses

    import dpllnn
    from dpllnn.bounds import pack
    from dpllnn.settings import DEFAULT
    from dpllnn.spec import Case, Disjunct, Spec

    rng = np.random.default_rng(11)
    g = random_graph(rng)
    assert pack(g, 1).row_chunk_bytes == 1
    assert pack(g).row_chunk_bytes == DEFAULT.graph_row_chunk_bytes
    lb, ub = -0.5 * np.ones(g.n_inputs), 0.5 * np.ones(g.n_inputs)
    Y = g.forward(lb + rng.random((256, g.n_inputs)) * (ub - lb))
    C = np.zeros((1, g.n_outputs))
    C[0, 0] = 1.0
    spec = Spec([Case(lb, ub, [Disjunct(C, np.array([Y[:, 0].min() - 1.0]))])], g.n_inputs,
                g.n_outputs)
    tiny = dataclasses.replace(DEFAULT, graph_row_chunk_bytes=1)
    a = dpllnn.verify(g, spec, timeout_s=20, workers=1, mode="cdcl")
    b = dpllnn.verify(g, spec, timeout_s=20, workers=1, mode="cdcl", settings=tiny)
    assert a.verdict == b.verdict
    assert a.verdict.value in ("unsat", "sat")


class _PlainSlice(Slice):
    """A Slice without the in-place region transpose (the generic full-size path)."""

    transpose_region = None


@settings(max_examples=20, deadline=None)
@given(seed=seeds)
def test_region_transpose_matches_the_full_transpose(seed):
    """The backward pass adds a Slice's transpose into its input in place (lowered MaxPool):
    bounds equal the full-size path's up to the rounding margin, never looser, and the
    caller's coefficient rows are left untouched."""
    from dpllnn.bounds.graph.crown import SweepState, backward_lower
    from dpllnn.io.onnx_load import network_or_graph

    rng = np.random.default_rng(seed)
    m = gm.pool_net(rng, in_shape=(1, 4, 4), kind="max", kernel=int(rng.choice([2, 3])),
                    stride=int(rng.choice([1, 2])))
    g = network_or_graph(m, "test")
    assert any(isinstance(nd.op, Slice) for nd in g.nodes)
    plain = Graph([Node(_PlainSlice(nd.op.in_shape, nd.op.index), nd.inputs, nd.name)
                   if isinstance(nd.op, Slice) else nd for nd in g.nodes], g.output)
    gp, pp = pack_graph(g), pack_graph(plain)
    xl, xu = random_box(rng, g.n_inputs)
    a = graph_bounds(gp, xl, xu, None, "crown")
    b = graph_bounds(pp, xl, xu, None, "crown")
    tol = 1e-9 * (1.0 + np.abs(b.z_lb))
    assert np.all(a.z_lb >= b.z_lb - 1e-12 * (1.0 + np.abs(b.z_lb)))
    assert np.all(a.z_lb <= b.z_lb + tol)
    # one sweep state, two graphs: only the merging of the Slices' transposes differs
    A = rng.normal(size=(5,) + g.nodes[g.output].shape)
    A0 = A.copy()
    st = a.sweep
    la = backward_lower(st, g.output, A)
    np.testing.assert_array_equal(A, A0)
    ra = backward_lower(SweepState(pp, st.lo, st.hi, st.wa, st.phase), g.output, A)
    assert np.all(la >= ra - 1e-12 * (1.0 + np.abs(ra)))
    assert np.all(la - ra <= 1e-9 * (1.0 + np.abs(ra)))
