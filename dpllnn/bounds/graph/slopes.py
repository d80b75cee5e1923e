"""The slope gradient of graph CROWN bounds, and alpha-CROWN on hidden neurons' bounds.

The CROWN lower bound is a piecewise-linear function of the lower ReLU slopes (Xu et al. 2021,
*Fast and complete*).  Its gradient needs no autograd: with the signs of the backward
coefficients fixed, the bound is ``<A_in, x*> + const`` for the box vertex ``x*`` that concretises
it, and running ``x*`` forward through the same relaxation (each ReLU replaced, row by row, by its
lower line where the coefficient is positive and by its upper chord elsewhere) gives at every
ReLU the value ``g`` of its pre-activation along that path; the derivative with respect to a
lower slope is then ``A+ * g`` (one backward and one forward sweep per step).

This module sits below :mod:`.api` (whose sweep calls :func:`optimise_node_rows` for the hidden
layers) and below :mod:`.alpha` and :mod:`.beta` (objective rows), so imports flow one way.
"""
from __future__ import annotations

import time

import numpy as np

from ...model.graph import Relu
from .crown import backward_lower

__all__ = ["alpha_lower_and_grad", "lower_and_grads", "adam_step", "optimise_node_rows"]


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
    alpha : ndarray (m, w) -- lower slopes of the first ``w`` ReLU outputs (``w = n_relus``, or
        ``gp.zoff[k]`` when the target depends on no ReLU ``>= k``)
    beta : ndarray (m, n_relus) >= 0, optional;  sign : ndarray float (n_relus,) in {-1, 0, 1}

    Returns
    -------
    (lower (m,), grad_alpha (m, w), grad_beta (m, n_relus) or None)
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
    grad = np.zeros((m, alpha.shape[1]))
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


def adam_step(grad, mom, vel, t, lr, b1=0.9, b2=0.999):
    """One Adam ascent step (Kingma & Ba 2015) from gradient ``grad`` at step ``t >= 1``:
    returns ``(step, mom, vel)``; the caller adds ``step`` and projects."""
    mom = b1 * mom + (1 - b1) * grad
    vel = b2 * vel + (1 - b2) * grad * grad
    return lr * (mom / (1 - b1 ** t)) / (np.sqrt(vel / (1 - b2 ** t)) + 1e-12), mom, vel




def optimise_node_rows(st, v, rows, shape, iters: int, lr: float = 0.1, deadline=None):
    """alpha-CROWN bounds of the flat elements ``rows`` of node ``v`` (a ReLU's pre-activation):
    each element's lower and upper bound gets its own lower slopes of every ReLU before ``v``
    (alpha-CROWN's per-(start node, neuron) slopes, Xu et al. 2021), optimised by projected Adam.

    The first step is CROWN's adaptive slopes, and per row the best bound over the steps is
    kept, so the result is never looser than CROWN on the same state; any slopes in [0, 1] give
    a sound bound, with the rounding margin of :func:`.crown.backward_lower`.  A neuron whose
    sign is proved leaves the loop (its bounds no longer change which relaxation it gets).

    Parameters
    ----------
    st : SweepState -- bounds of every node before ``v`` (final)
    v : int -- node index;  rows : ndarray int (r,) -- flat indices into node ``v``
    shape : tuple -- node ``v``'s shape (without the batch axis)
    iters : int -- Adam steps;  lr : float -- step size (slopes are in [0, 1])
    deadline : float, optional -- ``time.monotonic()``: no step is started after it

    Returns
    -------
    (lower (r,), upper (r,)) : ndarray float64

    Raises
    ------
    ValueError -- ``v`` has no ReLU before it (its slopes would be empty), or ``iters <= 0``
    """
    gp, g = st.gp, st.gp.graph
    ks = [gp.relu_index[a] for a in g.ancestors(v) if isinstance(g.nodes[a].op, Relu)]
    if not ks or iters <= 0:
        raise ValueError(f"node {v} has no ReLU before it, or no steps asked for")
    width = int(gp.zoff[max(ks) + 1])
    default = np.zeros(width)
    for k in range(max(ks) + 1):
        p = gp.pre[k]
        l, u = st.lo[p].reshape(-1), st.hi[p].reshape(-1)
        default[gp.zoff[k]:gp.zoff[k + 1]] = np.where(u >= -l, 1.0, 0.0)
    n = int(np.prod(shape))
    widest = gp.widest_upto[v]
    # per row: slopes, their best, Adam's two moments and the gradient (width each), the tape's
    # coefficients and slopes (width), the sweep's coefficients (a few of the widest node)
    per_row = 8 * (7 * width + 4 * widest)
    block = int(max(1, min(rows.size, gp.row_chunk_bytes // (2 * per_row))))
    lower, upper = np.empty(rows.size), np.empty(rows.size)
    for s in range(0, rows.size, block):
        r = np.asarray(rows[s:s + block])
        lo, hi = _optimise_block(st, v, r, n, shape, default, iters, lr, deadline)
        lower[s:s + r.size], upper[s:s + r.size] = lo, hi
    return lower, upper


def _optimise_block(st, v, r, n, shape, default, iters, lr, deadline):
    k = r.size
    A = np.zeros((2 * k, n))
    A[np.arange(k), r] = 1.0
    A[k + np.arange(k), r] = -1.0
    A = A.reshape((2 * k,) + tuple(shape))
    alpha = np.tile(default, (2 * k, 1))
    best = np.full(2 * k, -np.inf)
    mom, vel = np.zeros_like(alpha), np.zeros_like(alpha)
    act = np.arange(2 * k)
    for t in range(1, iters + 2):
        low, grad = alpha_lower_and_grad(st, v, A[act], alpha[act])
        best[act] = np.maximum(best[act], low)
        # a neuron is settled once either bound proves its sign
        settled = (best[:k] > 0.0) | (best[k:] > 0.0)
        keep = ~np.concatenate([settled, settled])[act]
        if t > iters or not np.any(keep) or (deadline is not None
                                             and time.monotonic() > deadline):
            break
        step, m1, v1 = adam_step(grad, mom[act], vel[act], t, lr)
        mom[act], vel[act] = m1, v1
        alpha[act] = np.clip(alpha[act] + step, 0.0, 1.0)
        act = act[keep]
    return best[:k], -best[k:]
