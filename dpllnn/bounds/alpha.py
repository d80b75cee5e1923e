"""alpha-CROWN: lower ReLU slopes optimised by projected gradient ascent (Xu et al. 2021).

Each optimised row (an objective row, or one side of an intermediate neuron) has its own slopes
``alpha[r]`` (n_relus,) in [0, 1].  Any slopes give a sound bound, so the optimisation is only a
heuristic and soundness rests on the backward kernel.  Slopes start from CROWN's adaptive choice
(or a warm start) and the best bound seen per row is kept, so the result is never looser than
CROWN.  With ``intermediate=True`` the unstable neurons of every hidden layer are optimised too
(layer by layer, each followed by a CROWN pass of the layers above it on the tightened bounds).
"""
from __future__ import annotations

import numpy as np

from .kernels import ROWS_PER_THREAD
from .kernels_alpha import adam_slopes, adam_slopes_rows
from .pack import PackedNet
from .propagate import LayerBounds, _box, _infeasible, _objective, objective_bounds, propagate_bounds
from .threads import kernel_threads

_EMPTY2 = np.zeros((0, 0))


def default_alpha(layer_bounds: LayerBounds, m: int) -> np.ndarray:
    """CROWN's adaptive lower slopes broadcast to ``m`` rows, float64 (m, n_relus)."""
    lb, ub = layer_bounds.lb, layer_bounds.ub
    a = np.where(ub > -lb, 1.0, 0.0)
    return np.ascontiguousarray(np.broadcast_to(a, (m, a.shape[0])), dtype=np.float64)


def optimise_rows(packed: PackedNet, xl, xu, base: LayerBounds, A0, c0, mag0, jtop: int, iters: int = 20,
                  lr: float = 0.1, alpha0=None):
    """Maximise the backward lower bound of ``A0 @ a_jtop + c0`` over per-row lower slopes.

    Parameters
    ----------
    packed : PackedNet
    xl, xu : ndarray, float64, shape (n_inputs,)
    base : LayerBounds
        Feasible intermediate bounds (layers ``<= jtop`` are used).
    A0 : ndarray (m, sizes[jtop+1]);  c0, mag0 : ndarray (m,)
        Coefficient on ``a_jtop``, constant, and magnitude bound of the constant (kernel contract
        of :func:`kernels.backward_lower`).
    jtop : int
    iters, lr : int, float
        Adam steps, step size; slopes projected to [0, 1].
    alpha0 : ndarray (m, n_relus), optional

    Returns
    -------
    lower : ndarray (m,)   best sound lower bound seen per row
    alpha : ndarray (m, n_relus)   slopes that achieved it
    """
    m = A0.shape[0]
    alpha = default_alpha(base, m) if alpha0 is None else alpha0
    alpha = np.array(alpha, dtype=np.float64, order="C")  # a private copy: the kernel updates it
    best = np.empty(m)
    best_alpha = np.empty_like(alpha)
    xmax = np.maximum(np.abs(xl), np.abs(xu))
    args = (packed.W, packed.b, packed.w_off, packed.sizes, packed.zoff, xl, xu, xmax,
            base.z_lb, base.z_ub, base.z_phase, base.wa, np.ascontiguousarray(A0, dtype=np.float64),
            np.asarray(c0, dtype=np.float64), np.asarray(mag0, dtype=np.float64), int(jtop), alpha,
            packed.margin_factor, int(iters), float(lr), int(packed.n_relus), best, best_alpha)
    nt = kernel_threads()
    if nt > 1 and m >= nt * ROWS_PER_THREAD:
        adam_slopes_rows(*args, nt)
    else:
        adam_slopes(*args)
    return best, best_alpha


def optimise_alpha(packed: PackedNet, xl, xu, base: LayerBounds, C, d, iters: int = 20, lr: float = 0.1,
                   alpha0=None):
    """Optimise per-row slopes for ``C @ y - d`` on ``base``'s intermediate bounds.

    Returns ``(lower (m,), alpha (m, n_relus))`` as :func:`optimise_rows`.
    """
    if getattr(packed, "is_graph", False):
        from .graph.alpha import graph_optimise_alpha
        return graph_optimise_alpha(packed, xl, xu, base, C, d, iters, lr, alpha0)
    L = packed.n_layers
    zL = packed.zoff[L]
    wa_L = base.wa[zL:]
    A0 = np.ascontiguousarray(C @ packed.weight(L))
    c0 = C @ packed.bias(L) - d
    mag0 = np.abs(C) @ wa_L + np.abs(d)
    return optimise_rows(packed, xl, xu, base, A0, c0, mag0, L - 1, iters, lr, alpha0)


def _tighten_intermediate(packed: PackedNet, xl, xu, lbd: LayerBounds, iters, lr) -> LayerBounds:
    """Optimise the unstable neurons of hidden layers 1..L-1 in turn; returns new bounds.

    Layer ``k``'s rows are optimised on the bounds of layers ``< k`` tightened so far.  No CROWN
    pass re-bounds the layers above after each step: the first iterate of a row's optimisation is
    CROWN's bound with the adaptive slopes on the current bounds, so that pass added nothing but
    time (a third of alpha-CROWN's on ACAS Xu).  Neurons stable on the old bounds keep them; the
    magnitudes ``wa`` stay those of the looser bounds, which still bound the terms (sound).
    """
    L = packed.n_layers
    z_lb, z_ub = lbd.z_lb.copy(), lbd.z_ub.copy()
    cur = LayerBounds(packed, z_lb, z_ub, lbd.wa, lbd.z_phase, xl, xu, False, -1, "alpha")
    cur.hidden_alpha = {}
    for k in range(1, L):
        z0, z1 = packed.zoff[k], packed.zoff[k + 1]
        lo, hi = z_lb[z0:z1], z_ub[z0:z1]
        ph = lbd.z_phase[z0:z1]
        sel = np.flatnonzero((lo < 0) & (hi > 0) & (ph == 0))
        if sel.size == 0:
            continue
        Wk, bk = packed.weight(k), packed.bias(k)
        A0 = np.ascontiguousarray(np.vstack([Wk[sel], -Wk[sel]]))
        c0 = np.concatenate([bk[sel], -bk[sel]])
        mag0 = np.abs(c0)
        low, slopes = optimise_rows(packed, xl, xu, cur, A0, c0, mag0, k - 1, iters, lr)
        cur.hidden_alpha[k] = (sel, slopes)
        n = sel.size
        lo[sel] = np.maximum(lo[sel], low[:n])  # views: updates z_lb / z_ub in place
        hi[sel] = np.minimum(hi[sel], -low[n:])
        if np.any(lo > hi):
            bad = z0 + int(np.flatnonzero(lo > hi)[0])
            return _infeasible(packed, xl, xu, lbd.z_phase, "alpha", bad, None, z_lb, z_ub)
    return cur


def rebound_hidden(packed: PackedNet, lbd: LayerBounds, hidden_alpha: dict, start_layer: int = 1):
    """Tighten ``lbd``'s hidden layers in place with given per-neuron slopes (no optimisation).

    For each hidden layer ``k >= max(start_layer, 1)`` in turn, the neurons of ``hidden_alpha[k]``
    (typically the root's alpha-CROWN slopes, :attr:`LayerBounds.hidden_alpha`) that are still
    unstable and unassigned under ``lbd`` get one backward pass each side with their own slopes,
    on the bounds of layers ``< k`` tightened so far, and are intersected with ``lbd``'s bounds
    (then re-clamped by phase).  Any slopes in [0, 1] give sound bounds, so this is sound for
    whatever region ``lbd`` is valid on; slopes optimised at the root stay far better than
    CROWN's adaptive ones in the nodes below it (the alpha inheritance of alpha-beta-CROWN,
    Wang et al. 2021).  ``lbd.wa`` is kept (magnitudes of looser bounds still bound the terms).

    Returns the flat index of the first neuron with ``lb > ub`` (the region is empty), or -1.
    """
    L = packed.n_layers
    z_lb, z_ub, zp = lbd.z_lb, lbd.z_ub, lbd.z_phase
    xl, xu = lbd.xl, lbd.xu
    for k in range(max(int(start_layer), 1), L):
        item = hidden_alpha.get(k)
        if item is None:
            continue
        sel, slopes = item
        n_all = sel.size
        z0 = packed.zoff[k]
        idx = z0 + sel
        keep = np.flatnonzero((z_lb[idx] < 0.0) & (z_ub[idx] > 0.0) & (zp[idx] == 0))
        if keep.size == 0:
            continue
        s = sel[keep]
        Wk, bk = packed.weight(k), packed.bias(k)
        A0 = np.ascontiguousarray(np.vstack([Wk[s], -Wk[s]]))
        c0 = np.concatenate([bk[s], -bk[s]])
        al = np.ascontiguousarray(np.vstack([slopes[keep], slopes[n_all + keep]]))
        low, _ = optimise_rows(packed, xl, xu, lbd, A0, c0, np.abs(c0), k - 1, 0, 0.0, alpha0=al)
        n = s.size
        j = z0 + s
        z_lb[j] = np.maximum(z_lb[j], low[:n])
        z_ub[j] = np.minimum(z_ub[j], -low[n:])
        bad = np.flatnonzero(z_lb[j] > z_ub[j])
        if bad.size:
            return int(j[bad[0]])
    return -1


def alpha_crown(packed: PackedNet, lb, ub, phase, C, d=None, iters: int = 20, lr: float = 0.1,
                start_layer: int = 0, prev: LayerBounds | None = None, alpha0=None,
                base: LayerBounds | None = None, early_stop: bool = False,
                intermediate: bool = False, intermediate_iters: int = 10,
                deadline: float | None = None,
                intermediate_deadline: float | None = None) -> LayerBounds:
    """alpha-CROWN bounds on ``C @ y - d`` (Xu et al. 2021, *Fast and complete*).

    Parameters
    ----------
    packed : PackedNet
    lb, ub : array_like, float64, shape (n_inputs,)
    phase : array_like int8 (n_relus,) or None
    C : array_like (m, n_outputs);  d : array_like (m,)
    iters, lr : int, float
        Adam steps and step size on the objective's slopes.
    start_layer, prev, early_stop :
        For the CROWN intermediate bounds (see ``compute_bounds``).
    alpha0 : ndarray (m, n_relus), optional
        Warm-start slopes for the objective rows (e.g. the parent node's ``alpha``).
    base : LayerBounds, optional
        Precomputed CROWN bounds for this box and phase (skips recomputing them).
    intermediate : bool
        Also optimise the unstable neurons of the hidden layers (``intermediate_iters`` steps
        each); costs about ``L * intermediate_iters`` CROWN passes: for the root / periodic use.
    deadline : float, optional
        Graphs only (``time.monotonic()``): their bound passes stop at it with
        :class:`dpllnn.errors.DeadlineReached`; a dense chain's pass takes milliseconds.
    intermediate_deadline : float, optional
        Graphs only (``time.monotonic()``): no hidden node's optimisation starts after it; the
        later nodes get CROWN bounds (on a ResNet one alpha step of every hidden node costs about
        a CROWN pass, 2-10 s).

    Returns
    -------
    LayerBounds
        Intermediate bounds (CROWN's, or tighter with ``intermediate``), ``obj_lower`` = max of
        the interval/CROWN bound and the best alpha bound per row, ``obj_upper`` from CROWN on the
        same intermediate bounds, ``alpha`` the best slopes, ``method = "alpha"``.
    """
    if getattr(packed, "is_graph", False):
        from .graph.alpha import graph_alpha_crown
        return graph_alpha_crown(packed, lb, ub, phase, C, d, iters, lr, start_layer, prev,
                                 alpha0=alpha0, base=base, deadline=deadline,
                                 intermediate=intermediate,
                                 intermediate_iters=intermediate_iters,
                                 intermediate_deadline=intermediate_deadline)
    xl, xu = _box(packed, lb, ub)
    C, d = _objective(C, d, packed.n_outputs)
    m = C.shape[0]
    if base is None:
        base = propagate_bounds(packed, xl, xu, phase, "crown", start_layer, prev,
                                early_stop=early_stop)
    if base.infeasible:
        base.obj_lower, base.obj_upper = np.full(m, np.inf), np.full(m, -np.inf)
        base.method = "alpha"
        return base
    if base.obj_lower is None or base.obj_lower.shape != (m,):
        base.obj_lower, base.obj_upper = objective_bounds(packed, xl, xu, base, C, d)
    if intermediate:
        # CROWN's objective is not monotone in the intermediate bounds: keep the better of both
        crown_lo, crown_hi = base.obj_lower, base.obj_upper
        base = _tighten_intermediate(packed, xl, xu, base, intermediate_iters, lr)
        if base.infeasible:
            base.obj_lower, base.obj_upper = np.full(m, np.inf), np.full(m, -np.inf)
            return base
        lo, hi = objective_bounds(packed, xl, xu, base, C, d)
        base.obj_lower, base.obj_upper = np.maximum(lo, crown_lo), np.minimum(hi, crown_hi)
    base.method = "alpha"
    lower, alpha = optimise_alpha(packed, xl, xu, base, C, d, iters, lr, alpha0)
    base.obj_lower = np.maximum(base.obj_lower, lower)
    base.alpha = alpha
    return base


__all__ = ["alpha_crown", "optimise_alpha", "optimise_rows", "default_alpha", "rebound_hidden"]
