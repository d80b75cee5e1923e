"""The graph LP (dpllnn.lp.graph_lp.GraphLP): on conv chains the same answers as the dense
LayeredLP of the lowered network, and on residual / pooling graphs never "infeasible" for a cell
and disjunct that a known point satisfies."""
from __future__ import annotations

import numpy as np
import pytest

from dpllnn.bounds import compute_bounds, pack
from dpllnn.io.onnx_load import network_or_graph
from dpllnn.lp.graph_lp import GraphLP, graph_lp_columns
from dpllnn.lp import LayeredLP
from dpllnn.model.lower import network_from_graph
from graph_models import conv_net, pool_net, resnet


def _point_problem(rng, g):
    n = g.n_inputs
    c = rng.uniform(-1, 1, n)
    lb, ub = c - 0.3, c + 0.3
    x0 = lb + rng.random(n) * (ub - lb)
    z0 = np.hstack(g.pre_activations(x0[None]))[0] if g.n_relus else np.zeros(0)
    ph = np.where(z0 >= 0, 1, -1).astype(np.int8)
    y0 = g.forward(x0)
    C = rng.normal(size=(2, g.n_outputs))
    return lb, ub, x0, ph, y0, C


@pytest.mark.parametrize("seed", range(8))
def test_graph_lp_matches_dense_on_chains(seed):
    rng = np.random.default_rng(500 + seed)
    g = network_or_graph(conv_net(rng, in_shape=(1, 4, 4), channels=(2,), kernel=3, stride=1,
                                  pads=(1, 1, 1, 1), n_out=3), "conv")
    net = network_from_graph(g)
    lb, ub, x0, ph, y0, C = _point_problem(rng, g)
    # one disjunct through the point, one that may or may not be reachable in the cell
    d = np.concatenate([C[:1] @ y0 + 0.05, C[1:] @ y0 - rng.uniform(0, 2)])
    rg = compute_bounds(pack(g), lb, ub)
    rd = compute_bounds(pack(net), lb, ub)
    glp = GraphLP(g, C, d, lb, ub, rg)
    dlp = LayeredLP(net, C, d, lb, ub, rd.lb, rd.ub)
    for rows in ((0, 1), (1, 2)):
        sg, xg = glp.solve(ph, rg.lb, rg.ub, rows)
        sd, xd = dlp.solve(ph, rd.lb, rd.ub, rows)
        if rows == (0, 1):
            assert sg == "feasible", "x0 lies in the cell and meets the disjunct"
        assert sg == sd, (rows, sg, sd)
        if sg == "feasible":
            assert abs(glp.last_t - dlp.last_t) <= 1e-6 * (1 + abs(dlp.last_t))


@pytest.mark.parametrize("kind", ["residual", "maxpool"])
def test_graph_lp_never_refutes_a_known_point(kind):
    for seed in range(6):
        rng = np.random.default_rng(900 + seed)
        if kind == "residual":
            model = resnet(rng, in_shape=(1, 3, 3), width=2, blocks=1, n_out=3)
        else:
            model = pool_net(rng, kind="max", in_shape=(1, 4, 4), channels=2, n_out=3)
        g = network_or_graph(model, kind)
        assert graph_lp_columns(g) < 5000
        lb, ub, x0, ph, y0, C = _point_problem(rng, g)
        d = C @ y0 + 1e-3
        r = compute_bounds(pack(g), lb, ub)
        lp = GraphLP(g, C, d, lb, ub, r)
        st, x = lp.solve(ph, r.lb, r.ub, (0, 2))
        assert st == "feasible", (seed, st)
        assert lp.last_t <= 0.0
        assert np.all((x >= lb) & (x <= ub))
        # the triangle relaxation (no phases) contains the cell: not refuted either
        st2, _ = lp.solve(np.zeros_like(ph), r.lb, r.ub, (0, 2), mode="refute")
        assert st2 != "infeasible"
