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

__all__ = ["graph_alpha_crown", "graph_optimise_alpha", "alpha_lower_and_grad",
           "lower_and_grads", "graph_backward_coefficients"]


def alpha_lower_and_grad(st, target, A, alpha):
    """Lower bounds (m,) of ``<A, node target>`` under slopes ``alpha`` (m, n_relus) and their
    gradient with respect to ``alpha`` (m, n_relus; zero outside unstable neurons)."""
    lower, grad, _ = lower_and_grads(st, target, A, alpha)
    return lower, grad


def lower_and_grads(st, target, A, alpha, beta=None, sign=None):
    """As :func:`alpha_lower_and_grad`, with beta-CROWN multipliers: the bound of
    ``<A, node target> - sum_j beta[r, j] sign[j] z_j`` (:mod:`.beta`) and its supergradients.

    Parameters
    ----------
    beta : ndarray (m, n_relus) >= 0, optional;  sign : ndarray float (n_relus,) in {-1, 0, 1}

    Returns
    -------
    (lower (m,), grad_alpha (m, n_relus), grad_beta (m, n_relus) or None)
    """
    gp, g = st.gp, st.gp.graph
    m = A.shape[0]
    tape = {}
    betas = None
    if beta is not None:
        z = gp.zoff
        B = -beta * sign
        betas = {k: B[:, z[k]:z[k + 1]] for k in range(gp.n_layers) if np.any(sign[z[k]:z[k + 1]])}
    lower, A0 = backward_lower(st, target, A, alphas=alpha, want_coeffs=True, tape=tape,
                               betas=betas)
    xl, xu = st.lo[0].reshape(-1), st.hi[0].reshape(-1)
    vals = {0: np.where(A0 >= 0.0, xl, xu).reshape((m,) + g.nodes[0].shape)}
    grad = np.zeros((m, gp.n_relus))
    gbeta = None if beta is None else np.zeros((m, gp.n_relus))
    need = sorted(g.ancestors(target) | {target})
    for v in need:
        if v == 0:
            continue
        nd = g.nodes[v]
        if isinstance(nd.op, Relu):
            k = gp.relu_index[v]
            z = vals[nd.inputs[0]].reshape(m, -1)
            z0, z1 = gp.zoff[k], gp.zoff[k + 1]
            if k in tape:
                if gbeta is not None:
                    gbeta[:, z0:z1] = -sign[z0:z1] * z
                Af, lo_s, up_s, icpt = tape[k]
                Ap = np.maximum(Af, 0.0)
                lo_s = np.broadcast_to(lo_s, z.shape)
                grad[:, z0:z1] = Ap * z * ((up_s != 1.0) & (up_s != 0.0))
                out = np.where(Ap > 0.0, lo_s * z, up_s * z + icpt)
            else:
                out = np.maximum(z, 0.0)
            vals[v] = out.reshape((m,) + nd.shape)
        else:
            vals[v] = nd.op.forward(*[vals[i] for i in nd.inputs])
    return lower, grad, gbeta


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


def adam_step(grad, mom, vel, t, lr, b1=0.9, b2=0.999):
    """One Adam ascent step (Kingma & Ba 2015) from gradient ``grad`` at step ``t >= 1``:
    returns ``(step, mom, vel)``; the caller adds ``step`` and projects."""
    mom = b1 * mom + (1 - b1) * grad
    vel = b2 * vel + (1 - b2) * grad * grad
    return lr * (mom / (1 - b1 ** t)) / (np.sqrt(vel / (1 - b2 ** t)) + 1e-12), mom, vel


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
    lower, alpha = graph_optimise_alpha(gp, lb, ub, base, C, d, iters, lr, alpha0, deadline)
    best = np.maximum(base.obj_lower, lower)
    best_alpha = alpha
    base.obj_lower = best
    base.alpha = best_alpha
    return base
