"""The entry point over every bound method: :func:`compute_bounds`.

IBP, symbolic intervals and CROWN are :func:`dpllnn.bounds.propagate.propagate_bounds`;
alpha-CROWN (:mod:`dpllnn.bounds.alpha`) starts from CROWN's bounds, so the dispatch sits in this
module above both and imports flow one way (compute -> alpha -> propagate).
"""
from __future__ import annotations

from .alpha import alpha_crown
from .pack import PackedNet
from .propagate import METHODS, LayerBounds, propagate_bounds

__all__ = ["compute_bounds"]


def compute_bounds(packed: PackedNet, lb, ub, phase=None, method: str = "crown", start_layer: int = 0,
                   prev: LayerBounds | None = None, C=None, d=None, early_stop: bool = False,
                   outer: LayerBounds | None = None, output_crown: bool = True,
                   **alpha_kw) -> LayerBounds:
    """Sound bounds on every pre-activation (and on ``C @ y - d``) over a box and a phase set.

    Parameters
    ----------
    packed : PackedNet
    lb, ub : array_like, float64, shape (n_inputs,)
        The input box (finite).
    phase : array_like of int8, shape (n_relus,), optional
        Flat layer-major phases: +1 constrains ``z >= 0`` (ReLU = identity, ``lb`` clamped to 0),
        -1 constrains ``z <= 0`` (output 0, ``ub`` clamped to 0), 0 unconstrained.
    method : {"ibp", "symbolic", "crown", "alpha"}
        Interval propagation; forward symbolic intervals (Wang et al. 2018, ReluVal/Neurify);
        backward linear relaxation (Zhang et al. 2018 CROWN / Singh et al. 2019 DeepPoly), whose
        every layer is intersected with IBP so it is never looser than ``"ibp"``; alpha-CROWN
        (Xu et al. 2021) on the objective, never looser than ``"crown"``.
    start_layer : int
        Recompute affine layers ``start_layer..L`` only; layers below are taken from ``prev``
        (re-clamped by ``phase``).  Requires ``prev`` when > 0.
    prev : LayerBounds, optional
    C, d : array_like, shapes (m, n_outputs) and (m,), optional
        Objective rows; bounds on ``C @ y - d`` go to ``obj_lower``/``obj_upper``.
    early_stop : bool
        CROWN only: stop back-substituting a neuron's bound once an intermediate layer's interval
        proves its sign (GPUPoly-style); its reported bound is then the one that proved it.
    outer : LayerBounds, optional
        Bounds known to hold on a superset of this box-and-phase region (e.g. a parent node's,
        computed under a subset of ``phase`` on the same or a larger box, possibly tightened by
        alpha-CROWN): every recomputed layer is intersected with them before the next layer is
        bounded (IBP and CROWN), so the result is never looser than ``outer`` and later layers
        gain from it.  Ignored for ``"symbolic"``; NaN entries (infeasible ``outer``) are ignored.
    output_crown : bool
        Graphs only (``crown``): False keeps the output bounds at IBP intersected with ``outer``
        (for a search node that bounds its objective rows directly); dense chains ignore it.
    **alpha_kw
        Passed to :func:`dpllnn.bounds.alpha.alpha_crown` for ``method="alpha"``.

    Returns
    -------
    LayerBounds
    """
    if getattr(packed, "is_graph", False):
        if method == "alpha":
            from .graph.alpha import graph_alpha_crown
            return graph_alpha_crown(packed, lb, ub, phase, C, d, start_layer=start_layer,
                                     prev=prev, outer=outer, **alpha_kw)
        from .graph.api import graph_bounds
        return graph_bounds(packed, lb, ub, phase, method, start_layer, prev, C=C, d=d,
                            outer=outer, deadline=alpha_kw.get("deadline"),
                            output_crown=output_crown)
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose from {METHODS}")
    if method == "alpha":
        if C is None:
            return propagate_bounds(packed, lb, ub, phase, "crown", start_layer, prev)
        return alpha_crown(packed, lb, ub, phase, C, d, start_layer=start_layer, prev=prev,
                           early_stop=early_stop, **alpha_kw)
    return propagate_bounds(packed, lb, ub, phase, method, start_layer, prev, C, d, early_stop,
                            outer)
