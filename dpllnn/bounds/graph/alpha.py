"""alpha-CROWN on graphs (Xu et al. 2021, *Fast and complete*): the objective's lower ReLU
slopes optimised by projected Adam, one slope per (objective row, unstable neuron).

The CROWN lower bound is a piecewise-linear function of the slopes.  Its gradient needs no
autograd: with the signs of the backward coefficients fixed, the bound is
``<A_in, x*> + const`` for the box vertex ``x*`` that concretises it, and running ``x*`` forward
through the same relaxation (each ReLU replaced, row by row, by its lower line where the
coefficient is positive and by its upper chord elsewhere) gives at every ReLU the value ``g`` of
its pre-activation along that path; the derivative with respect to a lower slope is then
``A+ * g`` (one backward and one forward sweep per step).  The best slopes per row are kept, so
the result is never looser than CROWN.
"""
from __future__ import annotations

import numpy as np

from ...model.graph import Relu
from .crown import backward_lower

__all__ = ["graph_alpha_crown", "alpha_lower_and_grad"]


def alpha_lower_and_grad(st, target, A, alpha):
    """Lower bounds (m,) of ``<A, node target>`` under slopes ``alpha`` (m, n_relus) and their
    gradient with respect to ``alpha`` (m, n_relus; zero outside unstable neurons)."""
    gp, g = st.gp, st.gp.graph
    m = A.shape[0]
    tape = {}
    lower, A0 = backward_lower(st, target, A, alphas=alpha, want_coeffs=True, tape=tape)
    xl, xu = st.lo[0].reshape(-1), st.hi[0].reshape(-1)
    vals = {0: np.where(A0 >= 0.0, xl, xu).reshape((m,) + g.nodes[0].shape)}
    grad = np.zeros((m, gp.n_relus))
    need = sorted(g.ancestors(target) | {target})
    for v in need:
        if v == 0:
            continue
        nd = g.nodes[v]
        if isinstance(nd.op, Relu):
            k = gp.relu_index[v]
            z = vals[nd.inputs[0]].reshape(m, -1)
            if k in tape:
                Ap, lo_s, up_s, icpt = tape[k]
                lo_s = np.broadcast_to(lo_s, z.shape)
                grad[:, gp.zoff[k]:gp.zoff[k + 1]] = Ap * z * ((up_s != 1.0) & (up_s != 0.0))
                out = np.where(Ap > 0.0, lo_s * z, up_s * z + icpt)
            else:
                out = np.maximum(z, 0.0)
            vals[v] = out.reshape((m,) + nd.shape)
        else:
            vals[v] = nd.op.forward(*[vals[i] for i in nd.inputs])
    return lower, grad


def _initial_alpha(lbd, m):
    l, u = lbd.lb, lbd.ub
    a = np.where(u >= -l, 1.0, 0.0)
    return np.tile(a, (m, 1))


def graph_alpha_crown(gp, lb, ub, phase, C, d=None, iters: int = 20, lr: float = 0.1,
                      start_layer: int = 0, prev=None, outer=None, alpha0=None, base=None,
                      early_stop: bool = False, intermediate: bool = False,
                      intermediate_iters: int = 10, deadline=None):
    """alpha-CROWN on the objective of a graph; as :func:`dpllnn.bounds.alpha_crown`
    (``intermediate`` is accepted and ignored: the hidden bounds stay CROWN's).

    Returns
    -------
    LayerBounds -- ``method = "alpha"``, ``obj_lower`` the best of CROWN and the optimised
    slopes per row, ``alpha`` (m, n_relus) the best slopes
    """
    import time

    from .api import _objective, graph_bounds, graph_objective_bounds
    C, d = _objective(C, d, gp.n_outputs)
    m = C.shape[0]
    if base is None:
        base = graph_bounds(gp, lb, ub, phase, "crown", start_layer, prev, C=C, d=d,
                            outer=outer)
    elif base.obj_lower is None or base.obj_lower.shape != (m,):
        base.obj_lower, base.obj_upper = graph_objective_bounds(gp, lb, ub, base, C, d)
    base.method = "alpha"
    if base.infeasible:
        return base
    st = base.sweep
    shp = (m,) + gp.graph.nodes[gp.graph.output].shape
    A = C.reshape(shp)
    alpha = _initial_alpha(base, m) if alpha0 is None else np.clip(np.array(alpha0), 0.0, 1.0)
    best = base.obj_lower.copy()
    best_alpha = alpha.copy()
    mom, vel = np.zeros_like(alpha), np.zeros_like(alpha)
    b1, b2 = 0.9, 0.999
    for t in range(1, iters + 1):
        if deadline is not None and time.monotonic() > deadline:
            break
        low, grad = alpha_lower_and_grad(st, gp.graph.output, A, alpha)
        low = low - d
        better = low > best
        best[better] = low[better]
        best_alpha[better] = alpha[better]
        if np.all(best > 0.0):
            break
        mom = b1 * mom + (1 - b1) * grad
        vel = b2 * vel + (1 - b2) * grad * grad
        step = lr * (mom / (1 - b1 ** t)) / (np.sqrt(vel / (1 - b2 ** t)) + 1e-12)
        alpha = np.clip(alpha + step, 0.0, 1.0)
    if iters > 0 and not np.all(best > 0.0):
        low = alpha_lower_and_grad(st, gp.graph.output, A, alpha)[0] - d
        better = low > best
        best[better] = low[better]
        best_alpha[better] = alpha[better]
    base.obj_lower = best
    base.alpha = best_alpha
    return base
