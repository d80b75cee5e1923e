"""Sound bound propagation for ReLU networks under an input box and a partial phase assignment.

Stable API (the search builds on it)
------------------------------------
``packed = pack(network)`` -> :class:`PackedNet`
    Flat float64 buffers (``W``, ``W_pos``, ``W_neg``, ``W_abs``, ``b``), offsets ``w_off``,
    widths ``sizes`` (``sizes[0] = n_inputs``), ``zoff``; ``n_relus``, ``n_z = n_relus + n_outputs``,
    ``layer_offsets`` (start of each ReLU layer in the flat, layer-major neuron index, then
    ``n_relus``), ``layer_of(idx) -> (layer, j)``.

``compute_bounds(packed, lb, ub, phase=None, method="crown", start_layer=0, prev=None, C=None, d=None,
early_stop=False, **alpha_kw)``
    -> :class:`LayerBounds`.  ``method`` in ``ibp | symbolic | crown | alpha``.  ``phase`` int8
    (n_relus,): +1 means the constraint ``z >= 0`` (ReLU is the identity, ``lb`` clamped to 0),
    -1 means ``z <= 0`` (output 0, ``ub`` clamped to 0), 0 free.  ``start_layer``/``prev``: reuse
    ``prev``'s bounds for affine layers ``< start_layer`` (re-clamped by the new phase) and
    recompute the rest (``prev`` must come from the same box or a superset of it, under a subset
    of the phases).  ``early_stop`` stops a neuron's back-substitution once an intermediate layer
    proves its sign (its reported bound is then the proving one; slower on ACAS/mnist at the root,
    so off by default).  ``**alpha_kw`` go to :func:`alpha_crown`.  Result fields: ``lb``/``ub`` (n_relus,) hidden pre-activation bounds,
    ``layer(k)`` views, ``output_lb``/``output_ub`` (n_outputs,), ``infeasible`` (the phases
    contradict the bounds: some ``lb > ub``, so the branch is empty) and ``conflict`` (first such
    flat index), ``obj_lower``/``obj_upper`` (m,) bounds on ``C @ y - d`` computed *backward from
    the objective* (``+inf``/``-inf`` when infeasible), masks ``stable_active``,
    ``stable_inactive``, ``unstable`` (a neuron with a fixed phase counts by its phase),
    ``n_unstable``, and ``alpha`` (alpha-CROWN slopes).

``objective_bounds(packed, lb, ub, layer_bounds, C, d, alpha=None, upper=True) -> (lower, upper)``
    Output-only CROWN on inherited intermediate bounds (fast refutation of a branch).
    ``lower_bound_minimisers(...)``, same arguments: the box vertex minimising each row's CROWN
    lower bound, (m, n_inputs) -- a start for attacks.

``objective_lower_split(packed, lb, ub, layer_bounds, C, d, idx, sgn, alpha=None) -> lower (m,)``
    The same lower bound, row ``r`` in the child where neuron ``idx[r]`` has phase ``sgn[r]``
    (FSB: every candidate's two children in one backward pass).

``set_kernel_threads(n)`` / ``kernel_threads()``
    Threads of this process's backward passes (rows split over numba threads; default 1).

``batch_objective_bounds(packed, lbs, ubs, C, d, method="symbolic", phase=None,
return_unstable=False) -> lower (B, m)[, unstable (B,)]``
    Many input boxes at once (input splitting).

``batch_crown(packed, lbs, ubs, C, d, phase=None, parallel=False, coeffs=False, prev_lb=None,
prev_ub=None)
-> (lower (B, m), unstable (B,), z_lb (B, n_z), z_ub (B, n_z), A_in (B, m, n_in) or None)``
    CROWN on many boxes in one numba call (optionally ``prange`` over boxes); per box equal to
    ``compute_bounds(..., "crown")`` + ``objective_bounds``; ``A_in`` are the input coefficients
    of the objective rows' linear lower bounds (split heuristics, candidate points);
    ``prev_lb``/``prev_ub`` (B, n_z): bounds known sound on each box (a parent's), intersected in.

``alpha_crown(packed, lb, ub, phase, C, d, iters=20, lr=0.1, alpha0=None, base=None,
intermediate=False, intermediate_iters=10) -> LayerBounds``
    Per-row lower slopes optimised by projected Adam; never looser than CROWN.  ``alpha0`` warm
    starts from a parent's ``LayerBounds.alpha``; ``base`` reuses CROWN bounds already computed;
    ``intermediate=True`` also optimises every hidden layer's unstable neurons (root / periodic
    tightening: ~3 s on mnist 256x6, ~0.1 s on ACAS Xu).

``babsr_scores(packed, layer_bounds, C_row) -> (n_relus,)``
    BaBSR-like branching scores (0 for neurons that are not unstable).

``backward_coefficients(packed, layer_bounds, C, d) -> (lam (m, n_relus), lower (m,))``
    (in ``scores``) CROWN's coefficient of each objective row on every ``relu(z_i)``.

``bounds_report(network, spec, method) -> dict``
    The JSON document of ``dpllnn bounds``.

``warmup() -> seconds``
    Compile / load every kernel once (for ``prepare_instance.sh`` and worker start-up).

Soundness
---------
Every returned bound contains every value attained by a point ``x`` in the box whose
pre-activations satisfy the phase constraints, *in exact real arithmetic of the float64 weights*:
each kernel widens its result by ``2 gamma_N * mag + 1e-290`` where ``mag`` bounds the sum of
absolute values of all terms that were summed (Higham's ``gamma_n = n u / (1 - n u)``,
``u = 2^-53``), and the ReLU chord carries its own slack (see ``pack.py``, ``kernels.py``).  The
search may claim a disjunct refuted only when ``obj_lower > 0`` strictly for one of its rows.

Ordering by construction: CROWN's every layer is intersected with IBP computed from the same
(tightened) previous layer and with a pure IBP pass, and its objective lower bound is at least the
interval bound over its (tighter) output box, so CROWN is never looser than IBP; alpha-CROWN starts
from CROWN's slopes and keeps the best per row, so it is never looser than CROWN.
"""
from .alpha import alpha_crown, optimise_alpha
from .compute import compute_bounds
from .pack import PackedNet
from .pack import pack as _pack_dense
from .warm import warmup
from .propagate import (METHODS, LayerBounds, batch_crown, batch_objective_bounds,
                        interval_objective_bounds, lower_bound_minimisers, objective_bounds,
                        objective_lower_split)
from .threads import kernel_threads, set_kernel_threads

__all__ = ["PackedNet", "pack", "LayerBounds", "compute_bounds", "objective_bounds",
           "objective_lower_split", "kernel_threads", "set_kernel_threads",
           "lower_bound_minimisers",
           "interval_objective_bounds", "batch_objective_bounds", "batch_crown", "alpha_crown", "optimise_alpha", "METHODS",
           "babsr_scores", "bounds_report", "warmup"]


def pack(network, row_chunk_bytes: int | None = None):
    """``network`` prepared for the bound engine: a :class:`PackedNet` for a dense chain
    (:class:`dpllnn.network.Network`), a :class:`~dpllnn.bounds.graph.gpack.GraphPacked` for a
    graph; both expose the z-space attributes of the contract above.

    ``row_chunk_bytes`` (graphs only; bytes, None: the default of
    :func:`~dpllnn.bounds.graph.gpack.pack_graph`): the memory budget of one chunk of backward
    rows.  Raises ValueError below 1."""
    if getattr(network, "is_graph", False):
        from .graph.gpack import pack_graph
        return pack_graph(network) if row_chunk_bytes is None else \
            pack_graph(network, row_chunk_bytes=row_chunk_bytes)
    return _pack_dense(network)


def __getattr__(name):
    if name == "babsr_scores":
        from .scores import babsr_scores
        return babsr_scores
    if name == "bounds_report":
        from .report import bounds_report
        return bounds_report
    raise AttributeError(name)
