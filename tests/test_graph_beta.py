"""beta-CROWN on graphs (dpllnn.bounds.graph.beta): never above the exact minimum over the branch
(LP oracle per completion of the partial assignment), sound on sampled points of random CNNs and
ResNets, never below CROWN on the same inherited bounds, and tighter than it where the splits
matter."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings, strategies as st

from dpllnn.bounds.graph.api import graph_bounds, graph_objective_bounds
from dpllnn.bounds.graph.beta import graph_beta_objective_lower
from dpllnn.bounds.graph.gpack import pack_graph
from dpllnn.model.lower import graph_from_network

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive  # noqa: E402
from test_graph_bounds import (keep, onnx_graph, pre_and_out, random_box, random_graph,  # noqa: E402
                               random_phase, samples)

seeds = st.integers(0, 2 ** 32 - 1)


def _branch(gp, xl, xu, ph):
    """The branch's bounds as the search builds them: the root's hidden bounds, clamped by the
    phases, only the output recomputed."""
    root = graph_bounds(gp, xl, xu, None, "crown")
    return graph_bounds(gp, xl, xu, ph, "crown", start_layer=gp.n_layers, prev=root, outer=root)


def _crown_lower(gp, xl, xu, lbd, C, d):
    from dpllnn.bounds.graph.api import _state_on
    from dpllnn.bounds.graph.crown import backward_lower
    st_ = _state_on(gp, xl, xu, lbd)
    shp = (C.shape[0],) + gp.graph.nodes[gp.graph.output].shape
    return backward_lower(st_, gp.graph.output, C.reshape(shp)) - d


@settings(max_examples=40, deadline=None)
@given(seed=seeds)
def test_beta_sound_on_samples(seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng) if rng.random() < 0.7 else onnx_graph(rng)
    gp = pack_graph(g)
    xl, xu = random_box(rng, g.n_inputs)
    ph, x0 = random_phase(rng, g, xl, xu, frac=0.5)
    lbd = _branch(gp, xl, xu, ph)
    if lbd.infeasible:
        return
    X = samples(rng, xl, xu)
    Z, Y = pre_and_out(g, X)
    k = keep(Z, ph)
    m = 3
    C, d = rng.normal(size=(m, g.n_outputs)), rng.normal(size=m)
    low, alpha, beta = graph_beta_objective_lower(gp, xl, xu, lbd, C, d, ph, iters=15)
    assert low.shape == (m,) and alpha.shape == beta.shape == (m, g.n_relus)
    assert np.all(beta >= 0.0) and np.all(beta[:, ph == 0] == 0.0)
    assert np.all((alpha >= 0.0) & (alpha <= 1.0))
    O = Y[k] @ C.T - d
    assert np.all(O >= low), np.min(O - low)
    # beta = 0 is CROWN, up to the extra rounding margin of the Lagrangian terms
    crown = _crown_lower(gp, xl, xu, lbd, C, d)
    assert np.all(low >= crown - 1e-9 * (1 + np.abs(crown)))


def _exact_branch_min(net, xl, xu, ph, c, dd):
    """min of ``c @ N(x) - dd`` over the box and the partial phases (every completion's LP)."""
    free = np.flatnonzero(ph == 0)
    best = np.inf
    for bits in range(2 ** free.size):
        full = ph.copy()
        full[free] = [1 if (bits >> i) & 1 else -1 for i in range(free.size)]
        t, _ = naive.cell_margin(net, xl, xu, full, c[None], np.array([dd]))
        best = min(best, t)
    return best


def test_beta_below_exact_branch_minimum():
    """On 60 random tiny dense nets (as graphs) and random partial assignments, the beta bound
    never exceeds the exact minimum (LP tolerance 1e-7), and beta improves on CROWN somewhere."""
    rng = np.random.default_rng(7)
    improved = checked = 0
    for _ in range(60):
        net = naive.random_network(rng, n_in=2, hidden=(4, 4), n_out=2)
        gp = pack_graph(graph_from_network(net))
        xl = rng.uniform(-1, 0, 2)
        xu = xl + rng.uniform(0.2, 1.5, 2)
        x0 = xl + rng.random(2) * (xu - xl)
        z0 = pre_and_out(gp.graph, x0[None])[0][0]
        ph = np.where(rng.random(net.n_relus) < 0.5, np.where(z0 >= 0, 1, -1), 0).astype(np.int8)
        lbd = _branch(gp, xl, xu, ph)
        assert not lbd.infeasible          # x0 is in the branch
        c = rng.normal(size=net.n_outputs)
        dd = float(rng.normal())
        low, _, _ = graph_beta_objective_lower(gp, xl, xu, lbd, c[None], np.array([dd]), ph,
                                               iters=40)
        exact = _exact_branch_min(net, xl, xu, ph, c, dd)
        assert low[0] <= exact + 1e-7 * (1 + abs(exact)), (low[0], exact)
        crown = _crown_lower(gp, xl, xu, lbd, c[None], np.array([dd]))[0]
        checked += 1
        improved += low[0] > crown + 1e-6 * (1 + abs(crown))
    assert checked == 60
    assert improved >= 5, improved


def test_beta_zero_is_crown():
    """With no steps and zero multipliers the bound is CROWN's backward bound exactly."""
    rng = np.random.default_rng(3)
    g = random_graph(rng, "resnet")
    gp = pack_graph(g)
    xl, xu = random_box(rng, g.n_inputs)
    ph, _ = random_phase(rng, g, xl, xu, frac=0.5)
    lbd = _branch(gp, xl, xu, ph)
    C, d = rng.normal(size=(2, g.n_outputs)), rng.normal(size=2)
    low, _, _ = graph_beta_objective_lower(gp, xl, xu, lbd, C, d, ph, iters=0)
    ref = _crown_lower(gp, xl, xu, lbd, C, d)
    if not lbd.infeasible:
        np.testing.assert_allclose(low, ref, rtol=1e-12, atol=1e-12)
        full = graph_objective_bounds(gp, xl, xu, lbd, C, d, upper=False)[0]
        assert np.all(full >= ref - 1e-12)


def test_beta_on_dense_bounds_below_exact_minimum():
    """beta-CROWN over a dense chain's own (dense-engine) node bounds, through the graph view:
    never above the exact branch minimum, and tighter than the dense engine's CROWN objective
    bound somewhere."""
    from dpllnn.bounds import compute_bounds, objective_bounds, pack
    from dpllnn.bounds.graph.dense_view import graph_view_of_dense
    rng = np.random.default_rng(11)
    improved = 0
    for _ in range(40):
        net = naive.random_network(rng, n_in=2, hidden=(4, 4), n_out=2)
        P, gp = pack(net), pack_graph(graph_from_network(net))
        xl = rng.uniform(-1, 0, 2)
        xu = xl + rng.uniform(0.2, 1.5, 2)
        x0 = xl + rng.random(2) * (xu - xl)
        z0 = pre_and_out(gp.graph, x0[None])[0][0]
        ph = np.where(rng.random(net.n_relus) < 0.5, np.where(z0 >= 0, 1, -1), 0).astype(np.int8)
        lbd = compute_bounds(P, xl, xu, ph, "crown")
        assert not lbd.infeasible
        c, dd = rng.normal(size=(1, net.n_outputs)), rng.normal(size=1)
        dense, _ = objective_bounds(P, xl, xu, lbd, c, dd, upper=False)
        low, _, _ = graph_beta_objective_lower(gp, xl, xu, graph_view_of_dense(gp, lbd), c, dd,
                                               ph, iters=40)
        exact = _exact_branch_min(net, xl, xu, ph, c[0], float(dd[0]))
        assert low[0] <= exact + 1e-7 * (1 + abs(exact)), (low[0], exact)
        assert max(low[0], dense[0]) <= exact + 1e-7 * (1 + abs(exact))
        improved += low[0] > dense[0] + 1e-6 * (1 + abs(dense[0]))
    assert improved >= 3, improved
