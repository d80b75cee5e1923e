"""Branching scores from the backward pass of the objective (for the search's heuristics)."""
from __future__ import annotations

import numpy as np

from . import kernels as K
from .pack import PackedNet
from .propagate import LayerBounds, _EMPTY2, _objective


def backward_coefficients(packed: PackedNet, layer_bounds: LayerBounds, C, d=None, alpha=None):
    """CROWN's coefficient ``lambda`` of each objective row on every post-activation ``a_j``.

    Parameters
    ----------
    packed : PackedNet
    layer_bounds : LayerBounds
        Feasible intermediate bounds.
    C : array_like (m, n_outputs);  d : array_like (m,), optional
    alpha : ndarray (m, n_relus), optional

    Returns
    -------
    lam : ndarray, float64, shape (m, n_relus)
        ``lam[r, i]`` is the coefficient on ``relu(z_i)`` in row ``r``'s backward pass, before
        the ReLU of neuron ``i`` is relaxed.
    lower : ndarray, shape (m,)
        The corresponding lower bounds of ``C @ y - d``.
    """
    if getattr(packed, "is_graph", False):
        from .graph.alpha import graph_backward_coefficients
        return graph_backward_coefficients(packed, layer_bounds, C, d, alpha)
    C, d = _objective(C, d, packed.n_outputs)
    m = C.shape[0]
    lbd = layer_bounds
    store = np.zeros((m, packed.n_z))
    out = np.empty(m)
    al = _EMPTY2 if alpha is None else np.ascontiguousarray(alpha, dtype=np.float64)
    K.objective_lower(packed.W, packed.b, packed.w_off, packed.sizes, packed.zoff, lbd.xl, lbd.xu,
                      lbd.z_lb, lbd.z_ub, lbd.z_phase, lbd.wa, C, -d, al, store,
                      packed.margin_factor, out, _EMPTY2, K._NO_IDX, K._NO_SGN)
    return store[:, : packed.n_relus], out


def babsr_scores(packed: PackedNet, layer_bounds: LayerBounds, C_row, d_row: float = 0.0) -> np.ndarray:
    """BaBSR-like score per neuron (Bunel et al. 2020): the objective's loss to the triangle.

    For an unstable neuron with bounds ``l < 0 < u`` and backward coefficient ``lam``, the chord
    intercept costs the lower bound ``max(-lam, 0) * u (-l) / (u - l)``; the lower-slope side costs
    ``max(lam, 0) * min(u, -l)`` at worst.  Their sum is the score; stable or fixed neurons get 0.

    Parameters
    ----------
    C_row : array_like, shape (n_outputs,) or (1, n_outputs)
    d_row : float

    Returns
    -------
    ndarray, float64, shape (n_relus,)
    """
    lam, _ = backward_coefficients(packed, layer_bounds, np.atleast_2d(C_row), np.array([d_row]))
    lam = lam[0]
    lb, ub = layer_bounds.lb, layer_bounds.ub
    unst = layer_bounds.unstable
    width = np.where(unst, ub - lb, 1.0)
    inter = np.where(unst, ub * (-lb) / width, 0.0)
    side = np.where(unst, np.minimum(ub, -lb), 0.0)
    return np.maximum(-lam, 0.0) * inter + 0.5 * np.maximum(lam, 0.0) * side
