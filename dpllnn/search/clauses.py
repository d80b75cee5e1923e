"""Shorter theory clauses for the CDCL search (:class:`dpllnn.search.theory.ReluTheory`).

A disjunct refuted at a node is explained by the node's whole phase assignment ``P``: the clause
``(not P) or (not sel_i)``.  Two ways make it shorter, both sound:

1. **Level-0 literals are left out.**  A root-fixed phase (CaDiCaL's level-0 units, a cube's
   phases, the root's stable neurons) is a unit clause of the solver; resolving the clause with
   it removes the literal, so the shorter clause is implied by the solver's clauses.
2. **Splits whose clamp changed nothing are proposed for removal, then re-checked.**  A split
   neuron whose pre-activation bounds at the node are already strictly of its phase (``l > 0``
   for active, ``u < 0`` for inactive) had its relaxation decided by the earlier layers: its
   clamp did not enter the bound (the "whose clamp did not change any relaxation" test of
   beta-CROWN's dual: Wang et al., NeurIPS 2021, a split with multiplier 0).  The bounds are then
   recomputed from the root snapshot (valid for every assignment that extends the root's fixed
   phases) under the kept literals only; only when that bound still refutes the disjunct (or
   the kept phases are infeasible) is the short clause used.  The re-check is the proof; without
   it the long clause stays.

Settings: ``TheorySettings.shorten_clauses``; counters ``n_refutation_clauses``,
``clause_lits_full``/``clause_lits`` (their literal counts: the whole assignment, and what was
used) and ``n_shortened``/``n_recheck`` (clauses shortened by a re-check, re-checks run).
"""
from __future__ import annotations

import numpy as np

from ..bounds import compute_bounds
from ..bounds.alpha import rebound_hidden

__all__ = ["ClauseShortening"]


class ClauseShortening:
    """Mixin of the theory: uses ``phase``, ``fixed``, ``snaps``, ``packed``, ``lb``, ``ub``,
    ``method``, ``n``, ``hidden_alpha``, ``cfg``, ``objective_lower`` and ``_refuted``."""

    def _neg_literals(self, mask) -> list:
        """Negated phase literals of the neurons in ``mask`` (bool, (n_relus,))."""
        idx = np.flatnonzero(mask)
        return (-(idx + 1) * self.phase[idx]).tolist()

    def _short_refutation(self, snap):
        """For the refuted disjuncts of ``snap``: ``(negated kept literals, refuted (n_open,))``
        where the kept literals alone (with the root's fixed phases) still refute the disjuncts
        marked, re-checked; None when nothing can be left out (then the full clause is used).
        Cached on the snapshot."""
        if snap.short is not None:
            return snap.short or None
        n, ph = self.n, self.phase
        assigned = (ph != 0) & (self.fixed == 0)
        lo, up = snap.lbd.z_lb[:n], snap.lbd.z_ub[:n]
        idle = assigned & (((ph == 1) & (lo > 0.0)) | ((ph == -1) & (up < 0.0)))
        if not idle.any():
            snap.short = False
            return None
        keep = assigned & ~idle
        cand = np.where(keep | (self.fixed != 0), ph, 0).astype(np.int8)
        root = self.snaps[0]
        self.n_recheck += 1
        lbd = compute_bounds(self.packed, self.lb, self.ub, cand, self.method, outer=root.lbd)
        if not lbd.infeasible and self.hidden_alpha:
            # the root's optimised hidden-layer slopes, as every node's bounds get them
            if rebound_hidden(self.packed, lbd, self.hidden_alpha, 1) >= 0:
                lbd.infeasible = True
        if lbd.infeasible:       # the kept phases alone are contradictory: refutes every disjunct
            ref = np.ones(len(snap.refuted), dtype=bool)
        else:
            ref = self._refuted(np.maximum(self.objective_lower(lbd), root.obj_lower))
        if not ref.any():
            snap.short = False
            return None
        snap.short = (self._neg_literals(keep), ref)
        return snap.short

    def refutation_reason(self, snap, i, full) -> list:
        """The phase part of the clause explaining that disjunct ``i`` is refuted at ``snap``
        (negated literals; the module docstring's two shortenings).  ``full``: the negated
        assigned literals without the level-0 ones (``_neg_assigned()``), the clause used when
        no shorter one is proved."""
        self.n_refutation_clauses += 1
        self.clause_lits_full += int(np.count_nonzero(self.phase)) + 1
        out = full
        if self.cfg.shorten_clauses and full:
            short = self._short_refutation(snap)
            if short is not None and short[1][i]:
                out = short[0]
                self.n_shortened += 1
        self.clause_lits += len(out) + 1
        return out
