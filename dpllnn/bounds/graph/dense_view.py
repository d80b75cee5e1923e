"""A dense chain's bounds seen by the graph engine: the passes that exist only there (beta-CROWN,
:mod:`.beta`) run on ``pack_graph(graph_from_network(network))`` with the dense engine's bounds.

The lowered graph has the nodes input, Dense_0, Relu_0, Dense_1, ..., Dense_L in this order and
the same z space (hidden pre-activations layer-major, then the outputs), so every node's interval
is a block of the dense :class:`LayerBounds` (ReLU outputs: the clamped pre-activation interval
through ``max(., 0)``), and the magnitudes ``wa`` have the graph engine's meaning
(``|W| max|input| + |b|``).
"""
from __future__ import annotations

import numpy as np

from ...model.graph import InputOp, Relu
from ..layers import LayerBounds
from .crown import SweepState

__all__ = ["graph_view_of_dense"]


def graph_view_of_dense(gp, lbd: LayerBounds) -> LayerBounds:
    """The dense bounds ``lbd`` (feasible, from ``compute_bounds`` on the dense network) as a
    graph :class:`LayerBounds` with ``sweep`` over ``gp`` (the lowered chain's GraphPacked).

    Raises
    ------
    ValueError -- ``gp`` is not the lowering of a chain with ``lbd``'s z space, or ``lbd`` is
        infeasible
    """
    g = gp.graph
    if lbd.infeasible:
        raise ValueError("graph_view_of_dense: infeasible bounds")
    if gp.n_z != lbd.packed.n_z or gp.n_relus != lbd.packed.n_relus:
        raise ValueError("graph_view_of_dense: graph and dense bounds differ in their z space")
    n = len(g.nodes)
    lo, hi, wa = [None] * n, [None] * n, [None] * n
    xl, xu = lbd.xl.reshape(1, -1), lbd.xu.reshape(1, -1)
    lo[0], hi[0] = xl, xu
    wa[0] = np.maximum(np.abs(xl), np.abs(xu))
    zoff = gp.zoff
    layer = 0
    for v in range(1, n):
        nd = g.nodes[v]
        if isinstance(nd.op, Relu):
            p = nd.inputs[0]
            lo[v], hi[v] = np.maximum(lo[p], 0.0), np.maximum(hi[p], 0.0)
            wa[v] = hi[v]
            continue
        if isinstance(nd.op, InputOp) or layer > gp.n_layers:
            raise ValueError("graph_view_of_dense: not a lowered dense chain")
        z0, z1 = zoff[layer], zoff[layer + 1]
        if nd.size != z1 - z0:
            raise ValueError("graph_view_of_dense: not a lowered dense chain")
        lo[v] = lbd.z_lb[z0:z1].reshape((1,) + nd.shape)
        hi[v] = lbd.z_ub[z0:z1].reshape((1,) + nd.shape)
        wa[v] = lbd.wa[z0:z1].reshape((1,) + nd.shape)
        layer += 1
    phases = [lbd.z_phase[zoff[k]:zoff[k + 1]] for k in range(gp.n_layers)]
    out = LayerBounds(gp, lbd.z_lb, lbd.z_ub, lbd.wa, lbd.z_phase, lbd.xl, lbd.xu, False, -1,
                      lbd.method)
    out.sweep = SweepState(gp, lo, hi, wa, phases)
    return out
