"""beta-CROWN on graphs (Wang et al., NeurIPS 2021, *Beta-CROWN*): the split constraints of a
branch enter the objective's backward pass with Lagrange multipliers.

A branch fixes phases ``s_j`` in {+1, -1}, i.e. the constraints ``s_j z_j >= 0`` on the
pre-activations.  For any ``beta >= 0``, ``f(x) >= f(x) - sum_j beta_j s_j z_j(x)`` wherever the
constraints hold, so a CROWN lower bound of the right-hand side (the extra linear terms are added
to the backward coefficients at each split neuron's pre-activation, ``backward_lower(betas=...)``)
is a sound lower bound of ``f`` on the branch (weak duality), whatever ``beta``.  With ``beta = 0``
it is CROWN; the multipliers are improved, jointly with the lower ReLU slopes ``alpha``, by
projected Adam ascent.  The bound is concave and piecewise linear in ``beta`` with the
supergradient ``-s_j g_j``, where ``g`` is the value of ``z`` along the relaxation path of the
vertex that concretises the bound (the same forward sweep that gives the alpha gradient,
:func:`dpllnn.bounds.graph.alpha.lower_and_grads`).

Used by the search at nodes whose hidden bounds are inherited from the parent (beta-CROWN's
BaB): there the constraints of the splits are what the inherited bounds do not know.
"""
from __future__ import annotations

import time

import numpy as np

from .slopes import adam_step, lower_and_grads

__all__ = ["graph_beta_objective_lower"]


def graph_beta_objective_lower(gp, lb, ub, layer_bounds, C, d, phase, alpha0=None, beta0=None,
                               iters: int = 10, lr_alpha: float = 0.1, lr_beta: float = 0.05,
                               deadline: float | None = None):
    """Lower bounds of ``C @ y - d`` on a branch, optimised over slopes and multipliers.

    Parameters
    ----------
    gp : GraphPacked
    lb, ub : ndarray float64 (n_inputs,) -- the input box (of ``layer_bounds`` or a sub-box)
    layer_bounds : LayerBounds -- feasible bounds valid on the branch (e.g. a parent's, clamped
        by the branch's phases: ``graph_bounds(start_layer=n_layers, prev=parent)``)
    C, d : ndarray (m, n_outputs), (m,)
    phase : ndarray int8 (n_relus,) -- the branch's phases; every nonzero entry is a split
        constraint ``phase_j * z_j >= 0`` that gets a multiplier
    alpha0 : ndarray (m, n_relus), optional -- starting slopes (e.g. the root's optimised ones)
    beta0 : ndarray (m, n_relus), optional -- starting multipliers (e.g. the parent node's);
        negative entries and entries of unsplit neurons are zeroed
    iters : int -- Adam steps
    lr_alpha, lr_beta : float -- step sizes (slopes are in [0, 1]; multipliers in the units of
        the objective per unit of pre-activation)
    deadline : float, optional -- ``time.monotonic()`` limit for the loop

    Returns
    -------
    (lower, alpha, beta) : ndarray (m,) float64 -- per row the best bound found over the steps
        (with ``beta0``/``alpha0`` the first step, so never worse than them), and the slopes and
        multipliers (m, n_relus) that gave it
    """
    from .api import _objective, _state_on
    C, d = _objective(C, d, gp.n_outputs)
    m = C.shape[0]
    st = _state_on(gp, lb, ub, layer_bounds)
    shp = (m,) + gp.graph.nodes[gp.graph.output].shape
    A = C.reshape(shp)
    sign = np.asarray(phase, dtype=np.int8).astype(np.float64)
    split = sign != 0.0
    if alpha0 is None:
        l, u = layer_bounds.lb, layer_bounds.ub
        alpha = np.tile(np.where(u >= -l, 1.0, 0.0), (m, 1))
    else:
        alpha = np.clip(np.array(alpha0, dtype=np.float64), 0.0, 1.0)
    beta = np.zeros((m, gp.n_relus)) if beta0 is None else \
        np.where(split, np.maximum(np.asarray(beta0, dtype=np.float64), 0.0), 0.0)
    best = np.full(m, -np.inf)
    best_alpha, best_beta = alpha.copy(), beta.copy()
    ma, va = np.zeros_like(alpha), np.zeros_like(alpha)
    mb, vb = np.zeros_like(beta), np.zeros_like(beta)
    for t in range(1, iters + 2):
        low, ga, gb = lower_and_grads(st, gp.graph.output, A, alpha, beta, sign)
        low = low - d
        better = low > best
        best[better] = low[better]
        best_alpha[better] = alpha[better]
        best_beta[better] = beta[better]
        if t > iters or np.all(best > 0.0) or (deadline is not None
                                               and time.monotonic() > deadline):
            break
        step, ma, va = adam_step(ga, ma, va, t, lr_alpha)
        alpha = np.clip(alpha + step, 0.0, 1.0)
        step, mb, vb = adam_step(gb, mb, vb, t, lr_beta)
        beta = np.maximum(beta + step, 0.0)
        beta[:, ~split] = 0.0
    return best, best_alpha, best_beta
