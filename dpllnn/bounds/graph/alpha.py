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

from .crown import backward_lower
from .slopes import adam_step, alpha_lower_and_grad

__all__ = ["graph_alpha_crown", "graph_optimise_alpha", "graph_backward_coefficients"]


def graph_backward_coefficients(gp, lbd, C, d=None, alpha=None):
    """CROWN's coefficient of each objective row on every ReLU output, (m, n_relus), and the
    lower bounds (m,) (as :func:`dpllnn.bounds.scores.backward_coefficients`)."""
    from .api import _objective
    C, d = _objective(C, d, gp.n_outputs)
    m = C.shape[0]
    tape = {}
    shp = (m,) + gp.graph.nodes[gp.graph.output].shape
    lower = backward_lower(lbd.sweep, gp.graph.output, C.reshape(shp), alphas=alpha, tape=tape)
    lam = np.zeros((m, gp.n_relus))
    for k, (Af, _, _, _) in tape.items():
        lam[:, gp.zoff[k]:gp.zoff[k + 1]] = Af
    return lam, lower - d


def graph_optimise_alpha(gp, xl, xu, base, C, d, iters: int = 20, lr: float = 0.1,
                         alpha0=None, deadline=None):
    """Optimise the objective's slopes on ``base``'s intermediate bounds (not modified).

    Returns ``(lower (m,), alpha (m, n_relus))``: per row the best bound found (never below
    the adaptive slopes' CROWN bound) and its slopes."""
    import time

    from .api import _objective, _state_on
    C, d = _objective(C, d, gp.n_outputs)
    m = C.shape[0]
    st = _state_on(gp, xl, xu, base)
    shp = (m,) + gp.graph.nodes[gp.graph.output].shape
    A = C.reshape(shp)
    alpha = _initial_alpha(base, m) if alpha0 is None else np.clip(np.array(alpha0), 0.0, 1.0)
    best = np.full(m, -np.inf)
    best_alpha = alpha.copy()
    mom, vel = np.zeros_like(alpha), np.zeros_like(alpha)
    for t in range(1, iters + 2):
        low, grad = alpha_lower_and_grad(st, gp.graph.output, A, alpha)
        low = low - d
        better = low > best
        best[better] = low[better]
        best_alpha[better] = alpha[better]
        if t > iters or np.all(best > 0.0) or (deadline is not None
                                               and time.monotonic() > deadline):
            break
        step, mom, vel = adam_step(grad, mom, vel, t, lr)
        alpha = np.clip(alpha + step, 0.0, 1.0)
    return best, best_alpha


def _initial_alpha(lbd, m):
    l, u = lbd.lb, lbd.ub
    a = np.where(u >= -l, 1.0, 0.0)
    return np.tile(a, (m, 1))


def graph_alpha_crown(gp, lb, ub, phase, C, d=None, iters: int = 20, lr: float = 0.1,
                      start_layer: int = 0, prev=None, outer=None, alpha0=None, base=None,
                      early_stop: bool = False, intermediate: bool = False,
                      intermediate_iters: int = 10, deadline=None, intermediate_deadline=None):
    """alpha-CROWN on the objective of a graph; as :func:`dpllnn.bounds.alpha_crown`.

    ``intermediate``: first re-sweep the graph from ``base`` (the CROWN bounds) with every hidden
    node's unstable neurons optimised, ``intermediate_iters`` steps each, until
    ``intermediate_deadline`` (:func:`.api.graph_bounds` ``alpha_iters``); the objective's slopes
    are then optimised on those bounds.

    Returns
    -------
    LayerBounds -- ``method = "alpha"``, ``obj_lower`` the best of CROWN and the optimised
    slopes per row, ``alpha`` (m, n_relus) the best slopes
    """
    from .api import _objective, graph_bounds, graph_objective_bounds
    C, d = _objective(C, d, gp.n_outputs)
    m = C.shape[0]
    if base is None:
        base = graph_bounds(gp, lb, ub, phase, "crown", start_layer, prev, C=C, d=d,
                            outer=outer, deadline=deadline)
    elif base.obj_lower is None or base.obj_lower.shape != (m,):
        base.obj_lower, base.obj_upper = graph_objective_bounds(gp, lb, ub, base, C, d)
    base.method = "alpha"
    if base.infeasible:
        return base
    if intermediate and intermediate_iters > 0:
        # the objective's CROWN bound is not monotone in the hidden bounds: keep the better
        crown_lo, crown_hi = base.obj_lower, base.obj_upper
        base = graph_bounds(gp, lb, ub, phase, "crown", start_layer, prev, C=C, d=d, outer=base,
                            deadline=deadline, alpha_iters=intermediate_iters,
                            alpha_deadline=intermediate_deadline, alpha_only=True)
        base.method = "alpha"
        if base.infeasible:
            return base
        base.obj_lower = np.maximum(base.obj_lower, crown_lo)
        base.obj_upper = np.minimum(base.obj_upper, crown_hi)
    lower, alpha = graph_optimise_alpha(gp, lb, ub, base, C, d, iters, lr, alpha0, deadline)
    best = np.maximum(base.obj_lower, lower)
    best_alpha = alpha
    base.obj_lower = best
    base.alpha = best_alpha
    return base
