"""The beta-CROWN step of the ReLU theory (:class:`dpllnn.search.theory.ReluTheory`).

At a search node whose CROWN objective bound leaves some disjunct open, beta-CROWN (Wang et al.,
"Beta-CROWN", NeurIPS 2021) puts the node's split constraints into the backward pass with
Lagrange multipliers and optimises slopes and multipliers together
(:func:`dpllnn.bounds.graph.beta.graph_beta_objective_lower`).  Its bound is sound for any
multipliers, so a refutation from it is as sound as one from CROWN; the slopes and multipliers
are kept in the node's snapshot and warm-start its children.
"""
from __future__ import annotations

import numpy as np

from ..bounds.graph.beta import graph_beta_objective_lower as beta_objective_lower
from ..bounds.graph.dense_view import graph_view_of_dense
from ..bounds.graph.gpack import pack_graph
from ..model.lower import graph_from_network

__all__ = ["TheoryBeta"]


class TheoryBeta:
    """Mixin of :class:`~dpllnn.search.theory.ReluTheory`: beta-CROWN on a node's objective.

    Uses the theory's state: ``packed``, ``lb``/``ub`` (the case's input box), ``C``/``d`` (the
    objective rows, (m, n_out) and (m,)), ``rows`` (row offsets per open disjunct), ``sel_val``,
    ``alpha_obj``, ``deadline`` and ``beta_iters``."""

    def _init_beta(self, network):
        """Set up the beta step.  Dense chains run beta-CROWN on their lowered graph (with the
        dense node bounds viewed per graph node); graphs use their own packing."""
        self._beta_gp = None
        if self.beta_iters and not getattr(self.packed, "is_graph", False):
            self._beta_gp = pack_graph(graph_from_network(network))
        self.t_beta = 0.0
        self.n_beta_refuted = 0

    def _beta_lower(self, lbd, ph, base, lo, ref):
        """beta-CROWN on the objective rows of the disjuncts still open at this node (neither
        refuted here or at an ancestor, nor deselected): a refuted row stays refuted in every
        descendant (the parent's bound is kept), so its multipliers would be optimised for
        nothing.  On oval21 (3 open disjuncts, one row each) the rows of refuted disjuncts were
        most of the node's beta work.

        ``lbd``: the node's bounds; ``ph``: phases (n_relus,) int8 in {-1, 0, +1}; ``base``: the
        parent snapshot; ``lo``: the node's CROWN objective bounds (m,) float64; ``ref``:
        refuted disjuncts (n_open,) bool.  Returns the objective bounds (m,) (never below
        ``lo``) and the slopes and multipliers (m, n_relus) for the children's warm start (the
        parent's on skipped rows), or ``None, None`` when there is no full set of starting
        slopes to merge into: the children then start again from ``alpha_obj`` and zero
        multipliers."""
        live = np.flatnonzero(~ref & (self.sel_val != -1))
        alpha0 = base.alpha if base.alpha is not None else self.alpha_obj
        if live.size == 0:
            return lo, alpha0, base.beta
        rows = np.concatenate([np.arange(self.rows[i], self.rows[i + 1]) for i in live])
        gp, glbd = self.packed, lbd
        if self._beta_gp is not None:
            gp, glbd = self._beta_gp, graph_view_of_dense(self._beta_gp, lbd)
        lo_b, al_r, be_r = beta_objective_lower(
            gp, self.lb, self.ub, glbd, self.C[rows], self.d[rows], ph,
            alpha0=None if alpha0 is None else alpha0[rows],
            beta0=None if base.beta is None else base.beta[rows],
            iters=self.beta_iters, deadline=self.deadline)
        lo = lo.copy()
        lo[rows] = np.maximum(lo[rows], lo_b)
        m = self.C.shape[0]
        if alpha0 is not None and alpha0.shape == (m, al_r.shape[1]):
            al = alpha0.copy()
            al[rows] = al_r
        elif rows.size == m:
            al = al_r
        else:
            return lo, None, None
        be = np.zeros((m, be_r.shape[1])) if base.beta is None else base.beta.copy()
        be[rows] = be_r
        return lo, al, be
