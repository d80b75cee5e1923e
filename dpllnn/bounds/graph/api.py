"""Bounds on graph networks with the contract of :func:`dpllnn.bounds.compute_bounds`.

:func:`graph_bounds` fills a :class:`~dpllnn.bounds.propagate.LayerBounds` whose z space is
that of :mod:`.gpack` (ReLU nodes in topological order, then the outputs):

- ``ibp``: interval propagation node by node (:func:`.crown.ibp_node`);
- ``crown``: IBP, and at every ReLU's pre-activation node a backward CROWN pass for the neurons
  IBP leaves unstable (a stable neuron's bounds enter no later relaxation), intersected with
  the IBP of that node computed from the already tightened inputs (so no looser than ``ibp``
  but for the rounding margins, which differ by ~1e-16 relative);
- ``alpha``: ``crown`` plus the objective's lower slopes optimised (:mod:`.alpha`).

Phases clamp the pre-activation bounds (+1: ``lb >= 0``; -1: ``ub <= 0``); a contradiction
(``lb > ub``) makes the result ``infeasible`` with ``conflict`` the first such flat index.
``start_layer = k`` reuses ``prev``'s bounds of every node before ReLU node ``k``'s
pre-activation (they depend on no ReLU ``>= k``).  ``outer`` bounds (valid on a superset of the
region) are intersected into every recomputed pre-activation.
"""
from __future__ import annotations

import time

import numpy as np

from ...errors import DeadlineReached
from ...model.graph import Relu
from ..pack import ABS_MARGIN
from ..layers import LayerBounds, _box, _infeasible, _objective, _zphase
from .crown import SweepState, backward_lower, ibp_node
from .gpack import GraphPacked
from .slopes import optimise_node_rows

__all__ = ["graph_bounds", "graph_objective_bounds", "graph_objective_lower_split",
           "graph_lower_bound_minimisers"]


def _crown_rows(st, v, rows, shape):
    """CROWN lower and upper bounds of the flat elements ``rows`` of node ``v``."""
    r = rows.size
    n = int(np.prod(shape))
    A = np.zeros((2 * r, n))
    A[np.arange(r), rows] = 1.0
    A[r + np.arange(r), rows] = -1.0
    low = backward_lower(st, v, A.reshape((2 * r,) + tuple(shape)))
    return low[:r], -low[r:]


def graph_bounds(gp: GraphPacked, lb, ub, phase=None, method: str = "crown",
                 start_layer: int = 0, prev: LayerBounds | None = None, C=None, d=None,
                 outer: LayerBounds | None = None, deadline: float | None = None,
                 alpha_iters: int = 0, alpha_deadline: float | None = None,
                 alpha_lr: float = 0.1, alpha_only: bool = False,
                 output_crown: bool = True) -> LayerBounds:
    """Sound bounds on every ReLU pre-activation and output of a graph (module docstring).

    Parameters and result as for :func:`dpllnn.bounds.compute_bounds` (``method`` in ``ibp``,
    ``crown``; ``symbolic`` is computed as ``crown``; alpha-CROWN is
    :func:`dpllnn.bounds.graph.alpha.graph_alpha_crown`, which starts from these bounds); the
    result's ``sweep`` holds the bounds of every node for later objective passes.

    ``deadline`` (``time.monotonic()``, optional): checked before each node's CROWN rows.

    ``alpha_iters > 0`` (with ``crown``): the unstable neurons of every pre-activation that has a
    ReLU before it get alpha-CROWN bounds instead, ``alpha_iters`` Adam steps of their own slopes
    each (:func:`.slopes.optimise_node_rows`, step size ``alpha_lr``), until ``alpha_deadline``
    (``time.monotonic()``); the nodes after it get CROWN, on the tighter bounds before them.  This
    is alpha-CROWN's intermediate-bound optimisation, done node by node in topological order, so
    every node is optimised on its ancestors' optimised bounds; it costs about ``alpha_iters + 1``
    CROWN passes of the nodes it reaches.  ``alpha_only`` (with ``outer`` computed on the same
    box, e.g. its CROWN bounds): the pre-activations that get no alpha steps keep IBP intersected
    with ``outer`` instead of a CROWN pass that would mostly repeat ``outer``'s.

    ``output_crown=False``: the output keeps IBP intersected with ``outer`` (a search node that
    bounds its objective rows directly needs no CROWN pass of every output neuron).

    A pre-activation that is one linear op of the input box, seen through element-wise affine
    maps and coordinate selections only (``GraphPacked.interval_exact``), gets no CROWN pass: interval
    arithmetic is exact on one affine map of a box, so CROWN could only repeat it.

    Raises
    ------
    ValueError -- bad shapes, a non-finite box, ``start_layer > 0`` without ``prev``
    DeadlineReached -- past ``deadline``
    """
    if method not in ("ibp", "crown", "symbolic"):
        raise ValueError(f"unknown bound method {method!r}")
    use_crown = method != "ibp"
    xl, xu = _box(gp, lb, ub)
    zp = _zphase(gp, phase)
    g = gp.graph
    if np.any(xl > xu):
        return _infeasible(gp, xl, xu, zp, method, 0, C)
    nn = len(g.nodes)
    lo, hi, wa = [None] * nn, [None] * nn, [None] * nn
    shp0 = (1,) + g.nodes[0].shape
    lo[0], hi[0] = xl.reshape(shp0), xu.reshape(shp0)
    wa[0] = np.maximum(np.abs(lo[0]), np.abs(hi[0]))
    z_lb = np.full(gp.n_z, np.nan)
    z_ub = np.full(gp.n_z, np.nan)
    z_wa = np.zeros(gp.n_z)
    phases = [zp[gp.zoff[k]:gp.zoff[k + 1]] for k in range(gp.n_layers)]
    st = SweepState(gp, lo, hi, wa, phases)
    relus_of = {}
    for k, p in enumerate(gp.pre):
        relus_of.setdefault(p, []).append(k)
    first = 1
    if start_layer > 0:
        if prev is None or prev.sweep is None:
            raise ValueError("start_layer > 0 needs prev (from the same graph)")
        first = gp.pre[start_layer] if start_layer < gp.n_layers else g.output
        first = max(first, 1)
        for v in range(first):
            lo[v], hi[v], wa[v] = (prev.sweep.lo[v].copy(), prev.sweep.hi[v].copy(),
                                   prev.sweep.wa[v])
        s = gp.zoff[start_layer]
        z_lb[:s], z_ub[:s], z_wa[:s] = prev.z_lb[:s], prev.z_ub[:s], prev.wa[:s]
        for v in range(first):
            for k in relus_of.get(v, ()):
                if k < start_layer:
                    bad = _clamp(gp, st, v, k, z_lb, z_ub)
                    if bad >= 0:
                        return _infeasible(gp, xl, xu, zp, method, bad, C, z_lb, z_ub)
            if isinstance(g.nodes[v].op, Relu):
                p = g.nodes[v].inputs[0]
                lo[v], hi[v] = np.maximum(lo[p], 0.0), np.maximum(hi[p], 0.0)
    with_relu_before = gp.after_a_relu if alpha_iters > 0 else frozenset()
    o_lb = o_ub = None
    if outer is not None and not outer.infeasible:
        o_lb = np.where(np.isnan(outer.z_lb), -np.inf, outer.z_lb)
        o_ub = np.where(np.isnan(outer.z_ub), np.inf, outer.z_ub)
    if 0 in relus_of:     # a ReLU straight on the input: its bounds are the box
        for k in relus_of[0]:
            bad = _clamp(gp, st, 0, k, z_lb, z_ub, o_lb, o_ub, copy_input=True)
            if bad >= 0:
                return _infeasible(gp, xl, xu, zp, method, bad, C, z_lb, z_ub)
    for v in range(first, nn):
        nd = g.nodes[v]
        if isinstance(nd.op, Relu):
            p = nd.inputs[0]
            lo[v], hi[v] = np.maximum(lo[p], 0.0), np.maximum(hi[p], 0.0)
            wa[v] = hi[v]
            continue
        lo[v], hi[v], wa[v] = ibp_node(nd.op, [lo[i] for i in nd.inputs],
                                       [hi[i] for i in nd.inputs], gp.margin_factor)
        ks = relus_of.get(v, ())
        is_out = v == g.output
        if not ks and not is_out:
            continue
        if use_crown:
            l, h = lo[v].reshape(-1), hi[v].reshape(-1)
            if ks and o_lb is not None:
                z0, z1 = gp.zoff[ks[0]], gp.zoff[ks[0] + 1]
                l[:] = np.maximum(l, o_lb[z0:z1])
                h[:] = np.minimum(h, o_ub[z0:z1])
            rows = np.flatnonzero((l < 0.0) & (h > 0.0)) if ks else np.arange(l.size)
            alpha_here = (ks and alpha_iters > 0 and v in with_relu_before
                          and (alpha_deadline is None or time.monotonic() < alpha_deadline))
            if ks and alpha_only and o_lb is not None and not alpha_here:
                rows = rows[:0]
            if v in gp.interval_exact or (is_out and not output_crown):
                rows = rows[:0]
            if rows.size and deadline is not None and time.monotonic() > deadline:
                raise DeadlineReached("graph bounds: deadline reached")
            if rows.size:
                if alpha_here:
                    cl, cu = optimise_node_rows(st, v, rows, nd.shape, alpha_iters, alpha_lr,
                                                alpha_deadline)
                else:
                    cl, cu = _crown_rows(st, v, rows, nd.shape)
                l[rows] = np.maximum(l[rows], cl)
                h[rows] = np.minimum(h[rows], cu)
        for k in ks:
            bad = _clamp(gp, st, v, k, z_lb, z_ub, o_lb, o_ub)
            z_wa[gp.zoff[k]:gp.zoff[k + 1]] = wa[v].reshape(-1)
            if bad >= 0:
                return _infeasible(gp, xl, xu, zp, method, bad, C, z_lb, z_ub)
    zo = gp.zoff[gp.n_layers]
    if o_lb is not None and use_crown:
        # CROWN is not monotone in the hidden bounds: a tighter sweep can give a looser output
        ol, oh = lo[g.output].reshape(-1), hi[g.output].reshape(-1)
        ol[:] = np.maximum(ol, o_lb[zo:])
        oh[:] = np.minimum(oh, o_ub[zo:])
    z_lb[zo:] = lo[g.output].reshape(-1)
    z_ub[zo:] = hi[g.output].reshape(-1)
    z_wa[zo:] = wa[g.output].reshape(-1)
    out = LayerBounds(gp, z_lb, z_ub, z_wa, zp, xl, xu, False, -1, method)
    out.sweep = st
    if C is not None:
        out.obj_lower, out.obj_upper = graph_objective_bounds(
            gp, xl, xu, out, C, d, crown=use_crown)
    return out


def _clamp(gp, st, v, k, z_lb, z_ub, o_lb=None, o_ub=None, copy_input=False):
    """Intersect node ``v`` (pre-activation of ReLU ``k``) with ``outer`` and clamp it by the
    phases of ``k``; write z block ``k``; return the first contradicted flat index or -1."""
    z0, z1 = gp.zoff[k], gp.zoff[k + 1]
    if copy_input:
        st.lo[v], st.hi[v] = st.lo[v].copy(), st.hi[v].copy()
    l, h = st.lo[v].reshape(-1), st.hi[v].reshape(-1)
    if o_lb is not None:
        l[:] = np.maximum(l, o_lb[z0:z1])
        h[:] = np.minimum(h, o_ub[z0:z1])
    ph = st.phase[k]
    l[ph == 1] = np.maximum(l[ph == 1], 0.0)
    h[ph == -1] = np.minimum(h[ph == -1], 0.0)
    z_lb[z0:z1], z_ub[z0:z1] = l, h
    bad = np.flatnonzero(~(l <= h))
    return int(z0 + bad[0]) if bad.size else -1


def _interval_lower(C, d, lo, hi, gam):
    amax = np.maximum(np.abs(lo), np.abs(hi))
    v = np.maximum(C, 0.0) @ lo + np.minimum(C, 0.0) @ hi - d
    return v - gam * (np.abs(C) @ amax + np.abs(d)) - ABS_MARGIN


def graph_objective_bounds(gp, lb, ub, layer_bounds, C, d=None, alpha=None, upper=True,
                           crown=True):
    """Bounds on ``C @ y - d`` from ``layer_bounds`` (computed by :func:`graph_bounds` on this
    box or a superset; ``lb``/``ub`` may be a sub-box).  As
    :func:`dpllnn.bounds.objective_bounds`: (lower (m,), upper (m,) or None);
    ``alpha``: dict ReLU number -> lower slopes (m, size) from :mod:`.alpha`."""
    C, d = _objective(C, d, gp.n_outputs)
    m = C.shape[0]
    if layer_bounds.infeasible:
        return np.full(m, np.inf), (np.full(m, -np.inf) if upper else None)
    st = _state_on(gp, lb, ub, layer_bounds)
    out = gp.graph.nodes[gp.graph.output]
    ylo, yhi = layer_bounds.output_lb, layer_bounds.output_ub
    lower = _interval_lower(C, d, ylo, yhi, gp.margin_factor)
    up = -_interval_lower(-C, -d, ylo, yhi, gp.margin_factor) if upper else None
    if crown:
        shp = (m,) + out.shape
        lower = np.maximum(lower, backward_lower(st, gp.graph.output, C.reshape(shp),
                                                 alphas=alpha) - d)
        if upper:
            # upper(C y - d) = -lower(-C y) - d
            up = np.minimum(up, -backward_lower(st, gp.graph.output, (-C).reshape(shp)) - d)
    return lower, up


def _state_on(gp, lb, ub, lbd):
    """The sweep state of ``lbd`` with the input box replaced by ``[lb, ub]`` (a sub-box)."""
    st = lbd.sweep
    xl, xu = _box(gp, lb, ub)
    if np.array_equal(xl, st.lo[0].reshape(-1)) and np.array_equal(xu, st.hi[0].reshape(-1)):
        return st
    lo, hi = list(st.lo), list(st.hi)
    shp0 = st.lo[0].shape
    lo[0], hi[0] = np.maximum(xl.reshape(shp0), st.lo[0]), np.minimum(xu.reshape(shp0),
                                                                      st.hi[0])
    s2 = SweepState(gp, lo, hi, st.wa, st.phase)
    s2._amax = dict(st._amax)      # the parent's magnitudes bound the sub-box's
    s2._amax[0] = st.amax(0)
    return s2


def graph_objective_lower_split(gp, lb, ub, layer_bounds, C, d, idx, sgn, alpha=None):
    """Lower bounds on the rows of ``C @ y - d``, row ``r`` in the child where neuron ``idx[r]``
    has phase ``sgn[r]`` (as :func:`dpllnn.bounds.objective_lower_split`)."""
    C, d = _objective(C, d, gp.n_outputs)
    m = C.shape[0]
    if layer_bounds.infeasible:
        return np.full(m, np.inf)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    sgn = np.ascontiguousarray(sgn, dtype=np.int8)
    if idx.shape != (m,) or sgn.shape != (m,) or np.any((idx < 0) | (idx >= gp.n_relus)):
        raise ValueError("idx and sgn need one hidden neuron and one phase per row")
    st = _state_on(gp, lb, ub, layer_bounds)
    shp = (m,) + gp.graph.nodes[gp.graph.output].shape
    low = backward_lower(st, gp.graph.output, C.reshape(shp), alphas=alpha,
                         overrides=(idx, sgn)) - d
    # the parent's output box holds on the child too (as in the dense engine)
    return np.maximum(low, _interval_lower(C, d, layer_bounds.output_lb, layer_bounds.output_ub,
                                           gp.margin_factor))


def graph_lower_bound_minimisers(gp, lb, ub, layer_bounds, C, d=None, alpha=None):
    """The box vertex minimising each row's CROWN lower bound, (m, n_inputs)."""
    C, d = _objective(C, d, gp.n_outputs)
    xl, xu = _box(gp, lb, ub)
    m = C.shape[0]
    if layer_bounds.infeasible:
        return np.tile(0.5 * (xl + xu), (m, 1))
    st = _state_on(gp, lb, ub, layer_bounds)
    shp = (m,) + gp.graph.nodes[gp.graph.output].shape
    _, A0 = backward_lower(st, gp.graph.output, C.reshape(shp), alphas=alpha, want_coeffs=True)
    return np.where(A0 >= 0.0, xl, xu)
