"""The alpha-CROWN optimisation loop in one numba call (projected Adam on the lower slopes).

The loop used to run in Python around :func:`kernels.backward_lower` and
:func:`kernels.relaxed_forward_grad`; on ACAS Xu boxes 40% of alpha-CROWN's time was that
Python overhead (small-array numpy arithmetic), measured with cProfile.  Any slopes in [0, 1] give
a sound bound, so this loop is a heuristic: soundness rests on ``backward_lower`` alone.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import backward_lower, relaxed_forward_grad


@njit(cache=True, nogil=True)
def adam_slopes(Wf, bf, w_off, sizes, zoff, xl, xu, xmax, lb, ub, phase, wa, A0, c0, mag0, jtop,
                alpha, gam, iters, lr, n_relus, best, best_alpha):
    """Maximise the backward lower bound of each row of ``A0 @ a_jtop + c0`` over its slopes.

    ``alpha`` (m, n_relus) is the start (modified); writes ``best`` (m,) -- the best sound lower
    bound seen per row -- and ``best_alpha`` (m, n_relus), its slopes.  Adam with
    ``b1 = 0.9, b2 = 0.999, eps = 1e-8``, slopes clipped to [0, 1] after every step.
    """
    m = A0.shape[0]
    n_in = xl.shape[0]
    n_z = lb.shape[0]
    Astore = np.zeros((m, n_z))
    Ain = np.empty((m, n_in))
    out = np.empty(m)
    grad = np.empty((m, n_z))
    mom = np.zeros((m, n_relus))
    vel = np.zeros((m, n_relus))
    b1, b2, eps = 0.9, 0.999, 1e-8
    no_idx = np.zeros(0, dtype=np.int64)
    no_sgn = np.zeros(0, dtype=np.int8)
    for r in range(m):
        best[r] = -np.inf
        for i in range(n_relus):
            best_alpha[r, i] = alpha[r, i]
    for it in range(iters + 1):
        backward_lower(Wf, bf, w_off, sizes, zoff, xl, xu, xmax, lb, ub, phase, wa, A0.copy(),
                       c0.copy(), mag0.copy(), jtop, alpha, Astore, gam, False, out, Ain, no_idx,
                       no_sgn)
        for r in range(m):
            if out[r] > best[r]:
                best[r] = out[r]
                for i in range(n_relus):
                    best_alpha[r, i] = alpha[r, i]
        if it == iters:
            break
        relaxed_forward_grad(Wf, bf, w_off, sizes, zoff, xl, xu, lb, ub, phase, alpha, Astore,
                             Ain, jtop + 1, grad)
        c1 = 1.0 - b1 ** (it + 1)
        c2 = 1.0 - b2 ** (it + 1)
        for r in range(m):
            for i in range(n_relus):
                g = grad[r, i]
                mom[r, i] = b1 * mom[r, i] + (1.0 - b1) * g
                vel[r, i] = b2 * vel[r, i] + (1.0 - b2) * g * g
                v = alpha[r, i] + lr * (mom[r, i] / c1) / (np.sqrt(vel[r, i] / c2) + eps)
                alpha[r, i] = min(max(v, 0.0), 1.0)


@njit(cache=True, parallel=True, nogil=True)
def adam_slopes_rows(Wf, bf, w_off, sizes, zoff, xl, xu, xmax, lb, ub, phase, wa, A0, c0, mag0,
                     jtop, alpha, gam, iters, lr, n_relus, best, best_alpha, nt):
    """:func:`adam_slopes` with its rows (each with its own slopes and Adam state) split into
    ``nt`` blocks, one per thread."""
    m = A0.shape[0]
    for t in prange(nt):
        a = t * m // nt
        b = (t + 1) * m // nt
        adam_slopes(Wf, bf, w_off, sizes, zoff, xl, xu, xmax, lb, ub, phase, wa, A0[a:b],
                    c0[a:b], mag0[a:b], jtop, alpha[a:b], gam, iters, lr, n_relus, best[a:b],
                    best_alpha[a:b])
