"""alpha-CROWN on the hidden neurons of graphs (``graph_bounds(alpha_iters=...)``,
:func:`dpllnn.bounds.graph.slopes.optimise_node_rows`): sampled soundness on random CNNs and
ResNets under random phases, never looser than CROWN, tighter on some, the slope gradient
against finite differences, and the time share (no step after ``alpha_deadline``)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import given, settings, strategies as st

from dpllnn.bounds.graph.alpha import graph_alpha_crown
from dpllnn.bounds.graph.api import graph_bounds
from dpllnn.bounds.graph.gpack import pack_graph
from dpllnn.bounds.graph.slopes import alpha_lower_and_grad

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_graph_bounds import (_objective, assert_sound, onnx_graph, pre_and_out,  # noqa: E402
                               random_box, random_graph, random_phase, samples)

seeds = st.integers(0, 2 ** 32 - 1)


def _region(seed):
    rng = np.random.default_rng(seed)
    g = random_graph(rng) if rng.random() < 0.7 else onnx_graph(rng)
    gp = pack_graph(g)
    xl, xu = random_box(rng, g.n_inputs)
    ph, x0 = random_phase(rng, g, xl, xu)
    Z, Y = pre_and_out(g, samples(rng, xl, xu))
    C, d = _objective(rng, g)
    return gp, xl, xu, ph, x0, Z, Y, C, d


def _inside(inner, outer, rel=1e-12):
    """``inner``'s hidden and output intervals inside ``outer``'s (``rel``: IBP recomputed from
    tighter inputs rounds differently by ~1e-16 relative)."""
    tl, tu = rel * (1 + np.abs(outer.z_lb)), rel * (1 + np.abs(outer.z_ub))
    assert np.all(inner.z_lb >= outer.z_lb - tl), np.min(inner.z_lb - outer.z_lb)
    assert np.all(inner.z_ub <= outer.z_ub + tu), np.max(inner.z_ub - outer.z_ub)


@settings(max_examples=60, deadline=None)
@given(seed=seeds)
def test_hidden_alpha_sound_and_not_looser(seed):
    gp, xl, xu, ph, x0, Z, Y, C, d = _region(seed)
    crown = graph_bounds(gp, xl, xu, ph, "crown", C=C, d=d)
    for alpha_only in (False, True):
        al = graph_bounds(gp, xl, xu, ph, "crown", C=C, d=d, outer=crown, alpha_iters=4,
                          alpha_lr=0.3, alpha_only=alpha_only)
        assert_sound(al, Z, Y, C, d, ph, x0)
        if crown.infeasible:
            continue
        if not al.infeasible:
            _inside(al, crown)
    # without outer: a sweep of its own, sound too
    al = graph_bounds(gp, xl, xu, ph, "crown", C=C, d=d, alpha_iters=3)
    assert_sound(al, Z, Y, C, d, ph, x0)


def _crown_then_alpha(seeds_, **kw):
    """Per feasible region of ``seeds_``: (region, its CROWN bounds, the hidden-alpha re-sweep
    on them with ``kw``)."""
    for seed in seeds_:
        reg = _region(seed)
        gp, xl, xu, ph, _, _, _, C, d = reg
        crown = graph_bounds(gp, xl, xu, ph, "crown", C=C, d=d)
        if not crown.infeasible:
            yield reg, crown, graph_bounds(gp, xl, xu, ph, "crown", C=C, d=d, outer=crown,
                                           alpha_only=True, **kw)


def test_hidden_alpha_tightens_some_graphs():
    """Over 40 random regions, the optimised slopes narrow some hidden interval by more than
    rounding: the optimisation does something."""
    tighter = 0
    for (gp, *_), crown, al in _crown_then_alpha(range(40), alpha_iters=10, alpha_lr=0.3):
        w0 = np.nansum(crown.z_ub[:gp.n_relus] - crown.z_lb[:gp.n_relus])
        w1 = np.nansum(al.z_ub[:gp.n_relus] - al.z_lb[:gp.n_relus])
        tighter += bool(w1 < w0 - 1e-9 * (1 + w0))
    assert tighter >= 4, tighter


@settings(max_examples=20, deadline=None)
@given(seed=seeds)
def test_graph_alpha_crown_intermediate(seed):
    """``graph_alpha_crown(intermediate=True)``: sound, hidden bounds inside CROWN's, objective
    bound never below CROWN's."""
    gp, xl, xu, ph, x0, Z, Y, C, d = _region(seed)
    crown = graph_bounds(gp, xl, xu, ph, "crown", C=C, d=d)
    al = graph_alpha_crown(gp, xl, xu, ph, C, d, iters=5, intermediate=True,
                           intermediate_iters=4)
    assert_sound(al, Z, Y, C, d, ph, x0)
    if not crown.infeasible and not al.infeasible:
        _inside(al, crown)
        assert np.all(al.obj_lower >= crown.obj_lower - 1e-12 * (1 + np.abs(crown.obj_lower)))


def test_past_deadline_keeps_outer():
    """With the time share used up, no node is optimised: every hidden interval is IBP
    intersected with ``outer`` (so inside it), and the pass costs no CROWN rows."""
    past = time.monotonic() - 1.0
    for (gp, xl, xu, ph, x0, Z, Y, C, d), crown, al in _crown_then_alpha(
            range(10), alpha_iters=5, alpha_deadline=past):
        assert_sound(al, Z, Y, C, d, ph, x0)
        _inside(al, crown)
        h = slice(0, gp.n_relus)
        np.testing.assert_allclose(al.z_lb[h], crown.z_lb[h], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(al.z_ub[h], crown.z_ub[h], rtol=1e-12, atol=1e-12)


def test_slope_gradient_of_a_hidden_node_matches_finite_differences():
    """The gradient of a hidden node's bound with slopes of the ReLUs before it only (width
    ``zoff[k]``), against central differences at slopes away from the kinks."""
    checked = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        gp, xl, xu, ph, _, _, _, _, _ = _region(seed)
        lbd = graph_bounds(gp, xl, xu, None, "crown")
        if gp.n_layers < 2:
            continue
        st_ = lbd.sweep
        v = gp.pre[gp.n_layers - 1]
        shape = gp.graph.nodes[v].shape
        n = int(np.prod(shape))
        A = rng.normal(size=(2, n)).reshape((2,) + shape)
        width = int(gp.zoff[gp.n_layers - 1])
        alpha = rng.uniform(0.2, 0.8, (2, width))
        low, grad = alpha_lower_and_grad(st_, v, A, alpha)
        assert grad.shape == (2, width)
        j = np.flatnonzero(np.abs(grad[0]) > 1e-6)
        for jj in j[:3]:
            h = 1e-6
            a1, a2 = alpha.copy(), alpha.copy()
            a1[0, jj] += h
            a2[0, jj] -= h
            fd = (alpha_lower_and_grad(st_, v, A, a1)[0][0]
                  - alpha_lower_and_grad(st_, v, A, a2)[0][0]) / (2 * h)
            assert abs(fd - grad[0, jj]) <= 1e-5 * (1 + abs(fd)), (seed, jj, fd, grad[0, jj])
            checked += 1
    assert checked >= 10, checked
