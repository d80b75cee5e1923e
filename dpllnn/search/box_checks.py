"""Counterexample search and exact cell LPs on the boxes of the input-splitting search
(:mod:`dpllnn.search.inputsplit`).

Candidate points (centres, corners) are validated best first; every ``pgd_every`` iterations PGD
runs from the worst boxes' centres and from the points with the smallest margins seen since
(``hot``).  A box with few unstable neurons is closed exactly: one cell LP per phase pattern of
its unstable neurons and disjunct (:class:`dpllnn.lp.CellLP`; ``"infeasible"`` is certified on a
loosened LP).  Every ``sat`` passes :func:`dpllnn.attack.validate_candidate`.
"""
from __future__ import annotations

import time

import numpy as np

from ..attack import falsify_box, validate_candidate

__all__ = ["BoxChecks"]


class BoxChecks:
    """Mixin of the input-splitting search (``inputsplit._Search``): its counterexample and
    cell-LP methods.  Uses the search's ``network``, ``spec``, ``case``, stacked rows ``C``,
    ``d``, ``groups``, ``ends``, ``packed``, ``deadline``, ``seed``, ``stats``, ``cfg``
    (InputSplitSettings) and its ``validations``/``hot``/``lp`` state."""

    # ---- counterexamples --------------------------------------------------------------
    def validate(self, x):
        if self.validations >= self.cfg.max_validations:
            return None
        self.validations += 1
        return validate_candidate(self.network, self.spec, x, self.case.lb, self.case.ub)

    def try_points(self, P, margins, open_, lo=None, hi=None):
        """Validate points whose margin is <= 0 for an open disjunct (best first).  With the
        boxes (``P`` = centres then corners of boxes ``lo``/``hi``), remember the points with the
        smallest margins as PGD starts (:meth:`pgd_hot`)."""
        ok = np.where(open_, margins, np.inf).min(axis=1)
        if lo is not None and self.cfg.hot_points > 0 and ok.size:
            j = int(np.argmin(ok))
            if np.isfinite(ok[j]):
                b = j % lo.shape[0]
                self.hot.append((float(ok[j]), P[j].copy(), lo[b].copy(), hi[b].copy(),
                                 open_[j].copy()))
                if len(self.hot) > 4 * self.cfg.hot_points:
                    self.hot.sort(key=lambda h: h[0])
                    del self.hot[self.cfg.hot_points:]
        for j in np.argsort(ok)[:8]:
            if ok[j] > 0:
                break
            cex = self.validate(P[j])
            if cex is not None:
                return cex
        return None

    def pgd_hot(self, it):
        """PGD from the remembered points with the smallest margins, each in its box."""
        if not self.hot:
            return None
        self.hot.sort(key=lambda h: h[0])
        hot, self.hot = self.hot[:self.cfg.hot_points], []
        return self._pgd_round([(x, lo, hi, op) for _, x, lo, hi, op in hot], it * 17, steps=20,
                               restarts=4, counter="pgd_hot_runs")

    def _open_rows(self, open_row):
        """Stacked row indices of the open disjuncts in ``open_row`` (k,) and their group starts
        within that selection (None for a single disjunct), as :func:`falsify_box` takes them."""
        sel = np.flatnonzero(open_row)
        rows = np.concatenate([np.arange(self.groups[s], self.ends[s]) for s in sel])
        g = np.cumsum([0] + [self.ends[s] - self.groups[s] for s in sel[:-1]]).astype(np.int64)
        return rows, (g if len(g) > 1 else None)

    def pgd(self, lo, hi, open_, it):
        """PGD from the centre of each box ``lo``/``hi`` (B, n) on its open disjuncts."""
        return self._pgd_round(((0.5 * (lo[j] + hi[j]), lo[j], hi[j], open_[j])
                                for j in range(lo.shape[0])), it * 31, steps=30, restarts=8,
                               counter="pgd_runs")

    def _pgd_round(self, starts, seed_offset, steps, restarts, counter):
        """PGD (:func:`falsify_box`) from each ``(x0, lo, hi, open disjuncts)`` of ``starts`` in
        its box, seed ``seed + seed_offset + j`` for the j-th; ``stats[counter]`` counts the runs.
        Returns the first validated counterexample, or None (also at the deadline)."""
        for j, (x0, lo, hi, op) in enumerate(starts):
            if time.monotonic() > self.deadline:
                return None
            if not op.any():
                continue
            rows, g = self._open_rows(op)
            x, m = falsify_box(self.network, lo, hi, self.C[rows], self.d[rows],
                               seed=self.seed + seed_offset + j, steps=steps, restarts=restarts,
                               x0=x0, deadline=self.deadline, groups=g)
            self.stats[counter] = self.stats.get(counter, 0) + 1
            if m <= 0:
                cex = self.validate(x)
                if cex is not None:
                    return cex
        return None

    # ---- cell LPs -----------------------------------------------------------------------
    def lp_close(self, lo, hi, open_row, max_unstable):
        """Try to refute the open disjuncts of one box exactly: enumerate the phases of its
        unstable neurons (at most ``max_unstable``) and solve one cell LP per phase pattern and
        disjunct (:class:`dpllnn.lp.CellLP`: ``"infeasible"`` is certified on a loosened LP).

        Returns (new open mask (k,), counterexample or None).
        """
        from ..bounds import compute_bounds
        from ..lp import CellLP
        lbd = compute_bounds(self.packed, lo, hi, None, "crown")
        if lbd.infeasible:
            return open_row, None
        unst = np.flatnonzero(lbd.unstable)
        if unst.size > max_unstable:
            return open_row, None
        if self.lp is None:
            self.lp = CellLP(self.network)
        base = np.where(lbd.stable_active, 1, -1).astype(np.int8)
        self.stats["lp_boxes"] = self.stats.get("lp_boxes", 0) + 1
        out = open_row.copy()
        ends = np.append(self.groups[1:], self.C.shape[0])
        for j in np.flatnonzero(open_row):
            Cj, dj = self.C[self.groups[j]:ends[j]], self.d[self.groups[j]:ends[j]]
            refuted = True
            for bits in range(1 << unst.size):
                if time.monotonic() > self.deadline:
                    return open_row, None
                ph = base.copy()
                ph[unst] = np.where((bits >> np.arange(unst.size)) & 1, 1, -1)
                status, x = self.lp.solve(lo, hi, ph, Cj, dj)
                self.stats["lp_solves"] = self.stats.get("lp_solves", 0) + 1
                if status == "infeasible":
                    continue
                refuted = False
                if status == "feasible" and x is not None:
                    cex = self.validate(x)
                    if cex is not None:
                        return out, cex
                break
            if refuted:
                out[j] = False
        return out, None

    def lp_pass(self, lo, hi, low, open_, unst, max_unstable, limit):
        """Cell LPs on up to ``limit`` boxes with few unstable neurons; updates ``open_``."""
        cand = np.flatnonzero((unst <= max_unstable) & open_.any(axis=1))[:limit]
        for i in cand:
            if time.monotonic() > self.deadline:
                break
            open_[i], cex = self.lp_close(lo[i], hi[i], open_[i], max_unstable)
            if cex is not None:
                return cex
            if not open_[i].any():
                self.stats["lp_closed"] = self.stats.get("lp_closed", 0) + 1
        return None
