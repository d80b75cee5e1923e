"""The result type of every bound computation: :class:`LayerBounds` (dense chains and graphs)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LayerBounds"]

# argument checks and the infeasible result, shared by the dense and the graph engine (both
# pass an object with the z-space attributes n_inputs, n_outputs, n_relus, n_z, zoff, layer_of)


@dataclass
class LayerBounds:
    """Sound pre-activation bounds of every layer on one input box under a phase assignment.

    Attributes
    ----------
    z_lb, z_ub : ndarray, float64, shape (n_z,)
        Bounds of all affine outputs (hidden neurons, then outputs), clamped by phase.
    wa : ndarray, float64, shape (n_z,)
        Magnitudes ``|W_k| max|a_{k-1}| + |b_k|`` used for the rounding margin of later passes.
    z_phase : ndarray, int8, shape (n_z,)
        The phase used (zeros on outputs).
    xl, xu : ndarray, float64, shape (n_inputs,)
        The input box.
    infeasible : bool
        True iff the phases contradict the bounds (some ``lb > ub``): the branch is empty.
    conflict : int
        Flat index of the first neuron found with ``lb > ub``, or -1.  Layers after it hold NaN.
    obj_lower, obj_upper : ndarray (m,) or None
        Bounds on ``C @ y - d`` when ``C`` was given (``+inf`` / ``-inf`` when infeasible).
    method : str
    alpha : ndarray (m, n_relus) or None
        Optimised lower slopes (alpha-CROWN only), reusable in :func:`objective_bounds`.
    """

    packed: object  # PackedNet or graph.gpack.GraphPacked
    z_lb: np.ndarray
    z_ub: np.ndarray
    wa: np.ndarray
    z_phase: np.ndarray
    xl: np.ndarray
    xu: np.ndarray
    infeasible: bool
    conflict: int
    method: str
    obj_lower: np.ndarray | None = None
    obj_upper: np.ndarray | None = None
    alpha: np.ndarray | None = None
    #: alpha-CROWN with ``intermediate=True`` only: per hidden layer ``k >= 1``, ``(sel, slopes)``
    #: -- the neurons of layer ``k`` it optimised (int64 indices within the layer) and their
    #: best slopes, float64 (2 * len(sel), n_relus): rows ``0..n-1`` bound ``z`` from below,
    #: rows ``n..2n-1`` bound ``-z`` from below (see :func:`dpllnn.bounds.alpha.rebound_hidden`)
    hidden_alpha: dict | None = None
    #: graph networks only: the bounds of every node of the graph (``dpllnn.bounds.graph``'s
    #: SweepState), which later backward passes over the same region relax with
    sweep: object = None

    @property
    def lb(self) -> np.ndarray:
        """Hidden pre-activation lower bounds, flat layer-major, (n_relus,) view."""
        return self.z_lb[: self.packed.n_relus]

    @property
    def ub(self) -> np.ndarray:
        return self.z_ub[: self.packed.n_relus]

    @property
    def phase(self) -> np.ndarray:
        return self.z_phase[: self.packed.n_relus]

    @property
    def output_lb(self) -> np.ndarray:
        return self.z_lb[self.packed.n_relus:]

    @property
    def output_ub(self) -> np.ndarray:
        return self.z_ub[self.packed.n_relus:]

    def layer(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lb, ub)`` views of affine layer ``k`` (``k = n_layers`` is the output)."""
        z = self.packed.zoff
        return self.z_lb[z[k]:z[k + 1]], self.z_ub[z[k]:z[k + 1]]

    @property
    def stable_inactive(self) -> np.ndarray:
        """Bool (n_relus,): phase -1, or unassigned with ``ub <= 0``."""
        ph = self.phase
        return (ph == -1) | ((ph == 0) & (self.ub <= 0.0))

    @property
    def stable_active(self) -> np.ndarray:
        """Bool (n_relus,): phase +1, or unassigned with ``lb >= 0`` (and not ``ub <= 0``)."""
        ph = self.phase
        return (ph == 1) | ((ph == 0) & (self.lb >= 0.0) & (self.ub > 0.0))

    @property
    def unstable(self) -> np.ndarray:
        """Bool (n_relus,): unassigned with ``lb < 0 < ub``."""
        return (self.phase == 0) & (self.lb < 0.0) & (self.ub > 0.0)

    @property
    def n_unstable(self) -> int:
        return int(np.count_nonzero(self.unstable))


def _box(packed, lb, ub) -> tuple[np.ndarray, np.ndarray]:
    xl = np.ascontiguousarray(lb, dtype=np.float64).reshape(-1)
    xu = np.ascontiguousarray(ub, dtype=np.float64).reshape(-1)
    if xl.shape != (packed.n_inputs,) or xu.shape != (packed.n_inputs,):
        raise ValueError(f"input box must have shape ({packed.n_inputs},), got {xl.shape}, {xu.shape}")
    if not (np.all(np.isfinite(xl)) and np.all(np.isfinite(xu))):
        raise ValueError("input box must be finite")
    return xl, xu


def _zphase(packed, phase) -> np.ndarray:
    zp = np.zeros(packed.n_z, dtype=np.int8)
    if phase is not None:
        ph = np.asarray(phase)
        if ph.shape != (packed.n_relus,):
            raise ValueError(f"phase must have shape ({packed.n_relus},), got {ph.shape}")
        zp[: packed.n_relus] = ph
    return zp


def _objective(C, d, n_out) -> tuple[np.ndarray, np.ndarray]:
    C = np.ascontiguousarray(np.atleast_2d(np.asarray(C, dtype=np.float64)))
    if d is None:
        d = np.zeros(C.shape[0])
    d = np.ascontiguousarray(np.asarray(d, dtype=np.float64).reshape(-1))
    if C.shape[1] != n_out or d.shape != (C.shape[0],):
        raise ValueError(f"C must be (m, {n_out}) and d (m,), got {C.shape}, {d.shape}")
    return C, d


def _infeasible(packed, xl, xu, zp, method, conflict, C, z_lb=None, z_ub=None) -> LayerBounds:
    z_lb = np.full(packed.n_z, np.nan) if z_lb is None else z_lb
    z_ub = np.full(packed.n_z, np.nan) if z_ub is None else z_ub
    if conflict >= 0:
        k, _ = packed.layer_of(conflict)
        z_lb[packed.zoff[k + 1]:] = np.nan
        z_ub[packed.zoff[k + 1]:] = np.nan
    out = LayerBounds(packed, z_lb, z_ub, np.zeros(packed.n_z), zp, xl, xu, True, conflict, method)
    if C is not None:
        m = np.atleast_2d(np.asarray(C)).shape[0]
        out.obj_lower = np.full(m, np.inf)
        out.obj_upper = np.full(m, -np.inf)
    return out
