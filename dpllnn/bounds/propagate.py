"""Typed wrappers around the bound kernels: :func:`propagate_bounds` (IBP, symbolic, CROWN),
:func:`objective_bounds`, :func:`batch_objective_bounds`.  See the package docstring for the
contract; :func:`dpllnn.bounds.compute.compute_bounds` is the entry point over every method."""
from __future__ import annotations

import numpy as np

from . import kernels as K
from .kernels_batch import crown_batch, crown_batch_parallel
from .kernels_sym import symbolic_batch
from .layers import LayerBounds, _box, _infeasible, _objective, _zphase
from .pack import PackedNet
from .threads import kernel_threads

METHODS = ("ibp", "symbolic", "crown", "alpha")
#: the methods of :func:`propagate_bounds` (alpha-CROWN: :mod:`dpllnn.bounds.alpha`)
_PROPAGATE_METHODS = ("ibp", "symbolic", "crown")
_EMPTY2 = np.zeros((0, 0))


def magnitudes(packed: PackedNet, z_lb, z_ub, xl, xu) -> np.ndarray:
    """``wa`` (n_z,) for given bounds: ``|W_k| max(ub_{k-1}, 0) + |b_k|`` (``|x|`` for k = 0)."""
    wa = np.empty(packed.n_z)
    z = packed.zoff
    amax = np.maximum(np.abs(xl), np.abs(xu))
    for k in range(packed.n_layers + 1):
        Wa = packed.W_abs[packed.w_off[k]:packed.w_off[k + 1]].reshape(packed.sizes[k + 1], packed.sizes[k])
        wa[z[k]:z[k + 1]] = Wa @ amax + np.abs(packed.bias(k))
        amax = np.maximum(z_ub[z[k]:z[k + 1]], 0.0)
    return wa


def propagate_bounds(packed: PackedNet, lb, ub, phase=None, method: str = "crown",
                     start_layer: int = 0, prev: LayerBounds | None = None, C=None, d=None,
                     early_stop: bool = False, outer: LayerBounds | None = None) -> LayerBounds:
    """:func:`dpllnn.bounds.compute.compute_bounds` for ``method`` in ``ibp | symbolic | crown``
    (the parameters are documented there).  alpha-CROWN builds on this function, so it lives
    above it (:mod:`dpllnn.bounds.alpha`, dispatched by ``compute_bounds``)."""
    if method not in _PROPAGATE_METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose from {_PROPAGATE_METHODS}")
    xl, xu = _box(packed, lb, ub)
    zp = _zphase(packed, phase)
    gam = packed.margin_factor
    if np.any(xl > xu):
        return _infeasible(packed, xl, xu, zp, method, 0, C)
    if method == "symbolic":
        return _symbolic_single(packed, xl, xu, zp, C, d)
    z_lb = np.full(packed.n_z, np.nan)
    z_ub = np.full(packed.n_z, np.nan)
    wa = np.zeros(packed.n_z)
    if start_layer > 0:
        if prev is None:
            raise ValueError("start_layer > 0 needs prev")
        s = packed.zoff[start_layer]
        z_lb[:s] = prev.z_lb[:s]
        z_ub[:s] = prev.z_ub[:s]
        wa[:s] = prev.wa[:s]
        ph = zp[:s]
        z_lb[:s][ph == 1] = np.maximum(z_lb[:s][ph == 1], 0.0)
        z_ub[:s][ph == -1] = np.minimum(z_ub[:s][ph == -1], 0.0)
        bad = np.flatnonzero(~(z_lb[:s] <= z_ub[:s]))
        if bad.size:
            return _infeasible(packed, xl, xu, zp, method, int(bad[0]), C, z_lb, z_ub)
    ninf = np.full(packed.n_z, -np.inf)
    pinf = np.full(packed.n_z, np.inf)
    if outer is not None and not outer.infeasible:
        ninf = np.where(np.isnan(outer.z_lb), -np.inf, outer.z_lb)
        pinf = np.where(np.isnan(outer.z_ub), np.inf, outer.z_ub)
    args = (packed.W, packed.W_pos, packed.W_neg, packed.W_abs, packed.b, packed.w_off, packed.sizes,
            packed.zoff, xl, xu, zp)
    if method == "ibp":
        bad = K.propagate_layers(*args, z_lb, z_ub, wa, start_layer, False, ninf, pinf, gam, False)
    else:
        ilb, iub, iwa = z_lb.copy(), z_ub.copy(), wa.copy()
        bad = K.propagate_layers(*args, ilb, iub, iwa, start_layer, False, ninf, pinf, gam, False)
        if bad < 0:
            bad = K.propagate_layers(*args, z_lb, z_ub, wa, start_layer, True, ilb, iub, gam, early_stop,
                                     kernel_threads())
    if bad >= 0:
        return _infeasible(packed, xl, xu, zp, method, int(bad), C, z_lb, z_ub)
    out = LayerBounds(packed, z_lb, z_ub, wa, zp, xl, xu, False, -1, method)
    if C is not None:
        if method == "ibp":
            out.obj_lower, out.obj_upper = interval_objective_bounds(packed, out, C, d)
        else:
            out.obj_lower, out.obj_upper = objective_bounds(packed, xl, xu, out, C, d)
    return out


def _symbolic_single(packed, xl, xu, zp, C, d) -> LayerBounds:
    if C is None:
        Cs, ds = np.zeros((0, packed.n_outputs)), np.zeros(0)
    else:
        C, d = _objective(C, d, packed.n_outputs)
        Cs, ds = np.vstack([C, -C]), np.concatenate([d, -d])
    lbo = np.empty((1, packed.n_z))
    ubo = np.empty((1, packed.n_z))
    obj = np.empty((1, Cs.shape[0]))
    unst = np.zeros(1, dtype=np.int64)
    inf = np.zeros(1, dtype=np.bool_)
    symbolic_batch(packed.W, packed.W_abs, packed.b, packed.w_off, packed.sizes, packed.zoff,
                   xl[None, :], xu[None, :], zp, Cs, ds, packed.margin_factor, 0, lbo, ubo, obj, unst, inf)
    z_lb, z_ub = lbo[0], ubo[0]
    if inf[0]:
        bad = np.flatnonzero(~(z_lb <= z_ub))
        return _infeasible(packed, xl, xu, zp, "symbolic", int(bad[0]) if bad.size else -1, C, z_lb, z_ub)
    out = LayerBounds(packed, z_lb, z_ub, magnitudes(packed, z_lb, z_ub, xl, xu), zp, xl, xu, False, -1,
                      "symbolic")
    if C is not None:
        m = C.shape[0]
        out.obj_lower, out.obj_upper = obj[0, :m].copy(), -obj[0, m:]
    return out


def objective_bounds(packed: PackedNet, lb, ub, layer_bounds: LayerBounds, C, d=None, alpha=None,
                     upper: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Output-only CROWN: bounds on ``C @ y - d`` from the given intermediate bounds.

    Parameters
    ----------
    packed : PackedNet
    lb, ub : array_like, shape (n_inputs,)
        The input box (the one ``layer_bounds`` was computed on, or a sub-box of it).
    layer_bounds : LayerBounds
        Sound hidden bounds (any method) and the phase they were computed under.
    C : array_like, shape (m, n_outputs);  d : array_like, shape (m,)
    alpha : ndarray, shape (m, n_relus), optional
        Per-row lower slopes (e.g. ``LayerBounds.alpha`` from alpha-CROWN); default adaptive.
    upper : bool
        False: skip the upper bound's backward pass (half the cost) and return None for it.

    Returns
    -------
    lower, upper : ndarray, float64, shape (m,)
        Sound bounds (``+inf``/``-inf`` if ``layer_bounds.infeasible``); the lower bound is also
        at least the interval bound over the output box of ``layer_bounds``.
    """
    if getattr(packed, "is_graph", False):
        from .graph.api import graph_objective_bounds
        return graph_objective_bounds(packed, lb, ub, layer_bounds, C, d, alpha, upper)
    C, d = _objective(C, d, packed.n_outputs)
    m = C.shape[0]
    if layer_bounds.infeasible:
        return np.full(m, np.inf), (np.full(m, -np.inf) if upper else None)
    args, al = _objective_args(packed, lb, ub, layer_bounds, alpha)
    lower = np.empty(m)
    _objective_lower(args, C, -d, al, packed.margin_factor, lower)
    if not upper:
        return lower, None
    up = np.empty(m)
    _objective_lower(args, np.ascontiguousarray(-C), d.copy(), _EMPTY2, packed.margin_factor, up)
    return lower, -up


def _objective_args(packed, lb, ub, lbd, alpha):
    """The network, box and bound arguments of ``K.objective_lower`` and the slopes array."""
    xl, xu = _box(packed, lb, ub)
    al = _EMPTY2 if alpha is None else np.ascontiguousarray(alpha, dtype=np.float64)
    return (packed.W, packed.b, packed.w_off, packed.sizes, packed.zoff, xl, xu, lbd.z_lb,
            lbd.z_ub, lbd.z_phase, lbd.wa), al


def _objective_lower(args, P, c, alpha, gam, out, ov_idx=K._NO_IDX, ov_sgn=K._NO_SGN):
    """``K.objective_lower`` into ``out``, on ``kernel_threads()`` threads when the rows are many."""
    nt = kernel_threads()
    if nt > 1 and P.shape[0] >= nt * K.ROWS_PER_THREAD:
        if ov_idx.shape[0] != P.shape[0]:
            ov_idx = np.full(P.shape[0], -1, dtype=np.int64)
            ov_sgn = np.zeros(P.shape[0], dtype=np.int8)
        K.objective_lower_rows(*args, P, c, alpha, _EMPTY2, gam, out, _EMPTY2, ov_idx, ov_sgn, nt)
    else:
        K.objective_lower(*args, P, c, alpha, _EMPTY2, gam, out, _EMPTY2, ov_idx, ov_sgn)


def objective_lower_split(packed: PackedNet, lb, ub, layer_bounds: LayerBounds, C, d, idx, sgn,
                          alpha=None) -> np.ndarray:
    """Lower bounds on the rows of ``C @ y - d``, row ``r`` in the child region where hidden
    neuron ``idx[r]`` has the phase ``sgn[r]`` (filtered smart branching: every candidate
    split's two children in one backward pass).

    Output-only CROWN on ``layer_bounds`` (valid on the parent region) with the split neuron
    exact (identity or zero) in its row; the later layers' bounds are the parent's (sound on the
    child, only looser).  Equal to :func:`objective_bounds` on ``layer_bounds`` with that neuron's
    phase set and its bounds clamped, row by row (up to BLAS's summation order).

    Parameters
    ----------
    packed, lb, ub, layer_bounds : as for :func:`objective_bounds`
    C : array_like, shape (m, n_outputs);  d : array_like, shape (m,)
    idx : array_like of int, shape (m,) -- flat hidden neuron index per row
    sgn : array_like of int, shape (m,) -- +1 (active) or -1 (inactive) per row
    alpha : ndarray, shape (m, n_relus), optional -- per-row lower slopes (default adaptive)

    Returns
    -------
    ndarray, float64, shape (m,) (``+inf`` if ``layer_bounds.infeasible``)
    """
    if getattr(packed, "is_graph", False):
        from .graph.api import graph_objective_lower_split
        return graph_objective_lower_split(packed, lb, ub, layer_bounds, C, d, idx, sgn, alpha)
    C, d = _objective(C, d, packed.n_outputs)
    m = C.shape[0]
    if layer_bounds.infeasible:
        return np.full(m, np.inf)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    sgn = np.ascontiguousarray(sgn, dtype=np.int8)
    if idx.shape != (m,) or sgn.shape != (m,) or np.any((idx < 0) | (idx >= packed.n_relus)):
        raise ValueError("idx and sgn need one hidden neuron and one phase per row")
    args, al = _objective_args(packed, lb, ub, layer_bounds, alpha)
    lower = np.empty(m)
    _objective_lower(args, C, -d, al, packed.margin_factor, lower, idx, sgn)
    return lower


def lower_bound_minimisers(packed: PackedNet, lb, ub, layer_bounds: LayerBounds, C, d=None,
                           alpha=None) -> np.ndarray:
    """The input-box vertex that minimises each row's CROWN linear lower bound.

    CROWN bounds ``C @ y - d >= a_r . x + c_r`` on the box; the bound is attained at the vertex
    ``x*_r`` (``lb`` where ``a_r >= 0``, ``ub`` elsewhere).  Where the relaxation is loose there,
    the network itself is often close to violating the row: ``x*_r`` is a cheap start for an
    attack (the "LP/bound primal as attack seed" of MN-BaB and alpha-beta-CROWN).

    Parameters
    ----------
    packed, lb, ub, layer_bounds, C, d, alpha : as for :func:`objective_bounds`

    Returns
    -------
    ndarray, float64, shape (m, n_inputs) -- one box vertex per row (the box centre for every
    row if ``layer_bounds.infeasible``).
    """
    if getattr(packed, "is_graph", False):
        from .graph.api import graph_lower_bound_minimisers
        return graph_lower_bound_minimisers(packed, lb, ub, layer_bounds, C, d, alpha)
    C, d = _objective(C, d, packed.n_outputs)
    m = C.shape[0]
    xl, xu = _box(packed, lb, ub)
    if layer_bounds.infeasible:
        return np.tile(0.5 * (xl + xu), (m, 1))
    al = _EMPTY2 if alpha is None else np.ascontiguousarray(alpha, dtype=np.float64)
    out = np.full(m, -np.inf)
    Ain = np.zeros((m, xl.shape[0]))
    lb_ = layer_bounds
    K.objective_lower(packed.W, packed.b, packed.w_off, packed.sizes, packed.zoff, xl, xu,
                      lb_.z_lb, lb_.z_ub, lb_.z_phase, lb_.wa, C, -d, al, _EMPTY2,
                      packed.margin_factor, out, Ain, K._NO_IDX, K._NO_SGN)
    return np.where(Ain >= 0.0, xl, xu)


def interval_objective_bounds(packed: PackedNet, layer_bounds: LayerBounds, C, d=None):
    """Bounds on ``C @ y - d`` from the output box only (what IBP gives); (lower, upper) (m,)."""
    C, d = _objective(C, d, packed.n_outputs)
    m = C.shape[0]
    if layer_bounds.infeasible:
        return np.full(m, np.inf), np.full(m, -np.inf)
    lo = np.empty(m)
    hi = np.empty(m)
    K.interval_objective(C, -d, layer_bounds.output_lb.copy(), layer_bounds.output_ub.copy(),
                         packed.margin_factor, lo)
    K.interval_objective(np.ascontiguousarray(-C), d.copy(), layer_bounds.output_lb.copy(),
                         layer_bounds.output_ub.copy(), packed.margin_factor, hi)
    return lo, -hi


def _batch_boxes(packed: PackedNet, lbs, ubs) -> tuple[np.ndarray, np.ndarray]:
    """Checked, contiguous float64 ``(B, n_inputs)`` arrays of box corners (ValueError if not)."""
    xl = np.ascontiguousarray(np.atleast_2d(np.asarray(lbs, dtype=np.float64)))
    xu = np.ascontiguousarray(np.atleast_2d(np.asarray(ubs, dtype=np.float64)))
    if xl.shape != xu.shape or xl.shape[1] != packed.n_inputs:
        raise ValueError(f"boxes must be (B, {packed.n_inputs}), got {xl.shape}, {xu.shape}")
    if not (np.all(np.isfinite(xl)) and np.all(np.isfinite(xu))):
        raise ValueError("input boxes must be finite")
    return xl, xu


def batch_objective_bounds(packed: PackedNet, lbs, ubs, C, d=None, method: str = "symbolic",
                           phase=None, return_unstable: bool = False, lower_mode: int = 0,
                           parallel: bool = False):
    """Lower bounds on ``C @ y - d`` for many input boxes at once (input splitting).

    Parameters
    ----------
    packed : PackedNet
    lbs, ubs : array_like, float64, shape (B, n_inputs)
    C : array_like, shape (m, n_outputs);  d : array_like, shape (m,)
    method : {"symbolic", "crown", "ibp"}
        ``"symbolic"`` and ``"crown"`` run one batched kernel each (:func:`batch_crown`);
        ``"ibp"`` loops.
    phase : array_like int8 (n_relus,), optional, shared by all boxes.
    return_unstable : bool
        Also return the per-box count of unstable neurons, int64 (B,).
    lower_mode : int
        Symbolic lower relaxation: 0 adaptive 0/1 slope, 1 Neurify parallel slope.
    parallel : bool
        ``"crown"`` only: spread the boxes over numba threads.

    Returns
    -------
    lower : ndarray, float64, shape (B, m)   (``+inf`` rows for boxes the phases make empty)
    unstable : ndarray, int64, shape (B,)    (only if ``return_unstable``)
    """
    xl, xu = _batch_boxes(packed, lbs, ubs)
    C, d = _objective(C, d, packed.n_outputs)
    B, m = xl.shape[0], C.shape[0]
    zp = _zphase(packed, phase)
    lower = np.empty((B, m))
    unst = np.zeros(B, dtype=np.int64)
    if method == "symbolic":
        inf = np.zeros(B, dtype=np.bool_)
        symbolic_batch(packed.W, packed.W_abs, packed.b, packed.w_off, packed.sizes, packed.zoff, xl, xu,
                       zp, C, d, packed.margin_factor, lower_mode, _EMPTY2, _EMPTY2, lower, unst, inf)
        lower[np.any(xl > xu, axis=1)] = np.inf
    elif method == "crown":
        lower, unst, _, _, _ = batch_crown(packed, xl, xu, C, d, phase=phase, parallel=parallel)
    elif method == "ibp":
        for i in range(B):
            lbd = propagate_bounds(packed, xl[i], xu[i], phase, method)
            if lbd.infeasible:
                lower[i] = np.inf
                continue
            lower[i] = interval_objective_bounds(packed, lbd, C, d)[0]
            unst[i] = lbd.n_unstable
    else:
        raise ValueError(f"batch_objective_bounds: unknown method {method!r}")
    return (lower, unst) if return_unstable else lower


def batch_crown(packed: PackedNet, lbs, ubs, C, d=None, phase=None, parallel: bool = False,
                coeffs: bool = False, checked: bool = True, early_stop: bool = False,
                prev_lb=None, prev_ub=None):
    """CROWN bounds of many input boxes in one numba call (see :mod:`.kernels_batch`).

    Per box the numbers equal ``compute_bounds(packed, lb, ub, phase, "crown")`` followed by
    ``objective_bounds(...)[0]`` (same kernels, same rounding margin).

    Parameters
    ----------
    packed : PackedNet
    lbs, ubs : array_like, float64, shape (B, n_inputs)
    C : array_like, shape (m, n_outputs);  d : array_like, shape (m,)
    phase : array_like int8 (n_relus,), optional, shared by all boxes.
    parallel : bool
        Spread the boxes over numba threads (``prange``).
    coeffs : bool
        Also return the input coefficients ``A_in`` of each row's linear lower bound
        ``A_in x + const`` (the bound is its minimum over the box, minus the margin).
    checked : bool
        Validate shapes and finiteness (the search may skip it for its own arrays).
    early_stop : bool
        As in :func:`propagate_bounds` (then equal to ``propagate_bounds(..., early_stop=True)``).
    prev_lb, prev_ub : array_like, float64, shape (B, n_z), optional
        Sound bounds already known on each box (e.g. its parent's ``z_lb``/``z_ub``: bounds
        sound on a box are sound on its sub-boxes), intersected layer by layer.  Then the
        per-box numbers may be tighter than ``compute_bounds``'s.

    Returns
    -------
    lower : float64 (B, m) -- sound lower bounds on ``C @ y - d`` (``+inf``: empty box/phases)
    unstable : int64 (B,) -- unstable hidden neurons per box (-1: empty)
    z_lb, z_ub : float64 (B, n_z) -- hidden and output pre-activation bounds (NaN when empty)
    A_in : float64 (B, m, n_inputs) or None
    """
    if checked:
        xl, xu = _batch_boxes(packed, lbs, ubs)
        C, d = _objective(C, d, packed.n_outputs)
    else:
        xl, xu = lbs, ubs
    B, m = xl.shape[0], C.shape[0]
    zp = _zphase(packed, phase)
    lower = np.empty((B, m))
    unst = np.empty(B, dtype=np.int64)
    z_lb = np.empty((B, packed.n_z))
    z_ub = np.empty((B, packed.n_z))
    ain = np.zeros((B, m, packed.n_inputs)) if coeffs else np.zeros((0, 0, 0))
    if prev_lb is None:
        plb = pub = _EMPTY2
    else:
        plb = np.ascontiguousarray(prev_lb, dtype=np.float64)
        pub = np.ascontiguousarray(prev_ub, dtype=np.float64)
        if plb.shape != (B, packed.n_z) or pub.shape != (B, packed.n_z):
            raise ValueError(f"prev_lb/prev_ub must be ({B}, {packed.n_z})")
    kern = crown_batch_parallel if parallel else crown_batch
    kern(packed.W, packed.W_pos, packed.W_neg, packed.W_abs, packed.b, packed.w_off, packed.sizes,
         packed.zoff, xl, xu, zp, C, np.ascontiguousarray(-d), packed.margin_factor,
         packed.n_relus, z_lb, z_ub, lower, ain, unst, early_stop, plb, pub)
    return lower, unst, z_lb, z_ub, (ain if coeffs else None)


__all__ = ["LayerBounds", "batch_crown", "propagate_bounds", "objective_bounds", "interval_objective_bounds",
           "batch_objective_bounds", "magnitudes", "METHODS"]
