"""The result type of every bound computation: :class:`LayerBounds` (dense chains and graphs)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LayerBounds"]


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
