"""alpha-CROWN: lower ReLU slopes optimised by projected gradient ascent (Xu et al. 2021).

Each objective row ``r`` has its own slopes ``alpha[r]`` (n_relus,) in [0, 1]; any such slopes give a
sound bound, so the optimisation is a heuristic and soundness rests on the backward kernel.  The
slopes start from CROWN's adaptive choice and the best bound seen per row is kept, so the result is
never looser than CROWN.  Intermediate-layer bounds are CROWN's (not re-optimised).
"""
from __future__ import annotations

import numpy as np

from . import kernels as K
from .pack import PackedNet
from .propagate import LayerBounds, _EMPTY2, _box, _objective, compute_bounds, objective_bounds


def default_alpha(layer_bounds: LayerBounds, m: int) -> np.ndarray:
    """CROWN's adaptive lower slopes broadcast to ``m`` rows, float64 (m, n_relus)."""
    lb, ub = layer_bounds.lb, layer_bounds.ub
    a = np.where(ub > -lb, 1.0, 0.0)
    return np.ascontiguousarray(np.broadcast_to(a, (m, a.shape[0])), dtype=np.float64)


def optimise_alpha(packed: PackedNet, xl, xu, base: LayerBounds, C, d, iters: int = 20, lr: float = 0.1,
                   alpha0=None):
    """Optimise per-row lower slopes for ``C @ y - d`` on top of ``base``'s intermediate bounds.

    Parameters
    ----------
    packed : PackedNet
    xl, xu : ndarray, float64, shape (n_inputs,)
    base : LayerBounds
        Feasible intermediate bounds (CROWN's).
    C : ndarray (m, n_outputs);  d : ndarray (m,)
    iters : int
        Gradient steps (Adam, step ``lr``, projected to [0, 1]).
    alpha0 : ndarray (m, n_relus), optional
        Warm start (e.g. the parent node's slopes); default CROWN's adaptive slopes.

    Returns
    -------
    lower : ndarray (m,)
        Best sound lower bound seen per row.
    alpha : ndarray (m, n_relus)
        The slopes that achieved it.
    """
    m = C.shape[0]
    alpha = default_alpha(base, m) if alpha0 is None else np.array(alpha0, dtype=np.float64, order="C")
    Astore = np.empty((m, packed.n_z))
    Ain = np.empty((m, packed.n_inputs))
    out = np.empty(m)
    grad = np.empty((m, packed.n_z))
    best = np.full(m, -np.inf)
    best_alpha = alpha.copy()
    mom = np.zeros_like(alpha)
    vel = np.zeros_like(alpha)
    b1, b2, eps = 0.9, 0.999, 1e-8
    args = (packed.W, packed.b, packed.w_off, packed.sizes, packed.zoff, xl, xu, base.z_lb, base.z_ub,
            base.z_phase)
    negd = -d
    for it in range(iters + 1):
        K.objective_lower(*args, base.wa, C, negd, alpha, Astore, packed.margin_factor, out, Ain)
        better = out > best
        best[better] = out[better]
        best_alpha[better] = alpha[better]
        if it == iters:
            break
        K.relaxed_forward_grad(*args, alpha, Astore, Ain, grad)
        g = grad[:, : packed.n_relus]
        mom = b1 * mom + (1 - b1) * g
        vel = b2 * vel + (1 - b2) * g * g
        step = lr * (mom / (1 - b1 ** (it + 1))) / (np.sqrt(vel / (1 - b2 ** (it + 1))) + eps)
        alpha = np.ascontiguousarray(np.clip(alpha + step, 0.0, 1.0))
    return best, best_alpha


def alpha_crown(packed: PackedNet, lb, ub, phase, C, d=None, iters: int = 20, lr: float = 0.1,
                start_layer: int = 0, prev: LayerBounds | None = None, alpha0=None,
                base: LayerBounds | None = None, early_stop: bool = False) -> LayerBounds:
    """alpha-CROWN bounds on ``C @ y - d`` (Xu et al. 2021, *Fast and complete*).

    Parameters
    ----------
    packed : PackedNet
    lb, ub : array_like, float64, shape (n_inputs,)
    phase : array_like int8 (n_relus,) or None
    C : array_like (m, n_outputs);  d : array_like (m,)
    iters, lr : int, float
        Adam steps and step size on the slopes.
    start_layer, prev :
        Incremental recomputation of the CROWN intermediate bounds (see ``compute_bounds``).
    alpha0 : ndarray (m, n_relus), optional
        Warm-start slopes.
    base : LayerBounds, optional
        Precomputed CROWN bounds for this box and phase (skips recomputing them).

    Returns
    -------
    LayerBounds
        CROWN's intermediate bounds, ``obj_lower`` = max(CROWN, best alpha bound) per row,
        ``obj_upper`` from CROWN, ``alpha`` the best slopes, ``method = "alpha"``.
    """
    xl, xu = _box(packed, lb, ub)
    C, d = _objective(C, d, packed.n_outputs)
    if base is None:
        base = compute_bounds(packed, xl, xu, phase, "crown", start_layer, prev, C=C, d=d,
                              early_stop=early_stop)
    elif base.obj_lower is None:
        base.obj_lower, base.obj_upper = objective_bounds(packed, xl, xu, base, C, d)
    base.method = "alpha"
    if base.infeasible:
        return base
    lower, alpha = optimise_alpha(packed, xl, xu, base, C, d, iters, lr, alpha0)
    base.obj_lower = np.maximum(base.obj_lower, lower)
    base.alpha = alpha
    return base


__all__ = ["alpha_crown", "optimise_alpha", "default_alpha", "_EMPTY2"]
