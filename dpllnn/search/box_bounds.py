"""Bounding, scoring and bisecting the boxes of the input-splitting search
(:mod:`dpllnn.search.inputsplit`): CROWN or symbolic bounds on batches of boxes (each child
intersecting its parent's hidden bounds), alpha-CROWN on deep boxes within a time share, the
smear scores and candidate points that come with CROWN's coefficients, and the choice of the
bisection dimension (``"lookahead"`` or ``"smear"``; :mod:`dpllnn.search.decide_input`).

Every bound here is a sound lower bound on its box (Zhang et al. 2018, CROWN; Xu et al. 2021,
alpha-CROWN with optimised intermediate bounds); row bounds are max'ed with the parent's, which
stays sound because a child is a sub-box of its parent.
"""
from __future__ import annotations

import time

import numpy as np

from ..bounds import batch_crown, batch_objective_bounds
from ..spec import union_row
from .decide_input import (bisect, box_priority, candidate_points, disjunct_margins,
                           disjunct_scores, lookahead_children, smear_scores)

__all__ = ["BoxBounds"]


class BoxBounds:
    """Bounds and bisection for :class:`dpllnn.search.inputsplit._Search`, which provides the
    state used here: ``network``, ``packed``, ``C``, ``d``, ``groups``, ``ends``,
    ``row_counts``, ``row_closed``, ``cfg`` (:class:`~dpllnn.settings.InputSplitSettings`),
    ``stats``, ``deadline``, ``rng``, ``t_start``, ``alpha_s``, ``alpha_gains`` and
    ``_alpha_unstable``."""

    # ---- alpha-CROWN on deep boxes --------------------------------------------------------
    def alpha_pass(self, lo, hi, low, open_, depth, zl, zu):
        """alpha-CROWN (with optimised intermediate bounds) on the popped boxes at least
        ``alpha_depth`` deep, within the ``alpha_share`` time budget.  Sound either way: every
        alpha bound is a sound bound on its box; row bounds are max'ed with the known ones, and
        the tightened hidden bounds are intersected with the inherited ones (the children inherit
        them).  Returns updated (low, open_, zl, zu); ``self._alpha_unstable`` holds the
        unstable count per box for the statistics."""
        from ..bounds import alpha_crown
        from ..bounds.propagate import LayerBounds, magnitudes
        cfg, st, pk = self.cfg, self.stats, self.packed
        B = lo.shape[0]
        self._alpha_unstable = np.zeros(B, dtype=np.int64)
        elapsed = time.monotonic() - self.t_start
        todo = np.flatnonzero(depth >= cfg.alpha_depth)
        before = box_priority(disjunct_scores(low, self.groups), open_)
        probe = np.ones(B, dtype=bool)  # tries that feed the gain statistics
        if len(self.alpha_gains) >= 32 and todo.size:
            # alpha closes a box when its gain over CROWN exceeds the box's gap.  Measured on
            # ACAS Xu prop_2: boxes whose gap exceeded ~3x the median gain closed 4-10% of the
            # time, the others 35-80%.  So skip boxes whose gap exceeds alpha_gap_factor x the
            # median gain -- estimated on a random tenth of the candidates tried regardless
            # (an estimate from the selected boxes only shrank with them and starved the search)
            thr = -cfg.alpha_gap_factor * float(np.median(self.alpha_gains))
            probe[todo] = self.rng.random(todo.size) < 0.1
            # ... but never below alpha_force_depth: there CROWN alone may never close a box
            # (4_2 prop_2 with a tighter filter: boxes split to float resolution, depth 63)
            todo = todo[(before[todo] >= thr) | probe[todo] | (depth[todo] >= cfg.alpha_force_depth)]
        if (todo.size == 0 or elapsed < cfg.alpha_after_s
                or self.alpha_s > cfg.alpha_share * (elapsed - cfg.alpha_after_s) + 0.05):
            return low, open_, zl, zu
        t0 = time.monotonic()
        low, open_, zl, zu = low.copy(), open_.copy(), zl.copy(), zu.copy()
        zp = np.zeros(pk.n_z, dtype=np.int8)
        nr = pk.n_relus
        for i in todo:
            if time.monotonic() > self.deadline:
                break
            if not (np.all(np.isfinite(zl[i])) and np.all(np.isfinite(zu[i]))):
                continue
            base = LayerBounds(pk, zl[i].copy(), zu[i].copy(),
                               magnitudes(pk, zl[i], zu[i], lo[i], hi[i]), zp, lo[i], hi[i],
                               False, -1, "crown")
            # optimise only the most promising rows of each open disjunct (the largest lower
            # bounds): one positive row refutes its disjunct
            rows = self._alpha_rows(low[i], open_[i])
            r = alpha_crown(pk, lo[i], hi[i], None, self.C[rows], self.d[rows],
                            iters=cfg.alpha_iters,
                            base=base, intermediate=cfg.alpha_inter_iters > 0,
                            intermediate_iters=max(cfg.alpha_inter_iters, 1))
            st["alpha_boxes"] = st.get("alpha_boxes", 0) + 1
            if r.infeasible:  # empty box under no phases cannot happen, but be safe: keep it
                continue
            low[i, rows] = np.maximum(low[i, rows], r.obj_lower)
            zl[i] = np.maximum(zl[i], r.z_lb)
            zu[i] = np.minimum(zu[i], r.z_ub)
            self._alpha_unstable[i] = int(np.sum((zl[i][:nr] < 0) & (zu[i][:nr] > 0)))
            after = box_priority(disjunct_scores(low[i:i + 1], self.groups), open_[i:i + 1])[0]
            if probe[i] and np.isfinite(before[i]) and np.isfinite(after):
                self.alpha_gains.append(max(after - before[i], 0.0))
            open_[i] &= ~(disjunct_scores(low[i:i + 1], self.groups)[0] > 0.0)
            if not open_[i].any():
                st["alpha_closed"] = st.get("alpha_closed", 0) + 1
        self.alpha_s += time.monotonic() - t0
        st["alpha_s"] = self.alpha_s
        return low, open_, zl, zu

    def _alpha_rows(self, low_row, open_row):
        """Indices of the ``alpha_rows`` rows with the largest lower bounds in every open
        disjunct (all rows when ``alpha_rows`` is 0)."""
        k = self.cfg.alpha_rows
        out = []
        for j in np.flatnonzero(open_row):
            r0, r1 = self.groups[j], self.ends[j]
            if k <= 0 or r1 - r0 <= k:
                out.append(np.arange(r0, r1))
            else:
                out.append(r0 + np.argsort(-low_row[r0:r1], kind="stable")[:k])
        return np.concatenate(out)

    # ---- bounds -----------------------------------------------------------------------
    def bound(self, lo, hi, parent_lower, open_, method=None, pz=None):
        """Row lower bounds of boxes (B, m), max'ed with the parents' (sound either way),
        unstable counts (B,), and (CROWN only, else None) smear scores (B, n) and the
        minimiser corners (B, n) of the linear lower bound of each box's worst row, and the
        boxes' hidden/output bounds (zl, zu) (B, n_z) (B, 0 when not kept).  ``pz``: the
        parents' (zl, zu), intersected in (sound: the children are sub-boxes)."""
        method = method or self.cfg.method
        self.stats["nodes"] = self.stats.get("nodes", 0) + lo.shape[0]
        if method == "crown":
            inh = pz is not None and pz[0].shape[1] > 0
            low, unst, zl, zu, A = batch_crown(self.packed, np.ascontiguousarray(lo),
                                               np.ascontiguousarray(hi), self.C, self.d,
                                               parallel=self.cfg.parallel, coeffs=True,
                                               checked=False, early_stop=self.cfg.early_stop,
                                               prev_lb=pz[0] if inh else None,
                                               prev_ub=pz[1] if inh else None)
            low = np.maximum(low, parent_lower)
            sc, pts = self._from_coeffs(lo, hi, low, open_, A)
            if not self.cfg.inherit_bounds:
                zl = zu = np.zeros((lo.shape[0], 0))
            return low, np.maximum(unst, 0), sc, pts, (zl, zu)
        low, unst = batch_objective_bounds(self.packed, lo, hi, self.C, self.d, method="symbolic",
                                           return_unstable=True)
        low = np.maximum(low, parent_lower)
        if method == "hybrid":
            self.refine(lo, hi, low, unst, open_)
        return low, unst, None, None, self._nz(lo.shape[0])

    @staticmethod
    def _noinfo(B, pool):
        """Bounds that say nothing, (B, pool width), for boxes bounded without hidden bounds."""
        w = pool.zl.shape[1]
        return np.full((B, w), -np.inf), np.full((B, w), np.inf)

    def _nz(self, B):
        z = np.zeros((B, 0))
        return z, z

    def _from_coeffs(self, lo, hi, low, open_, A):
        """Smear ``|A_in[r]| * width`` and minimiser corner of row ``r`` = the best row (largest
        lower bound) of the worst open disjunct (smallest score) of each box."""
        B = lo.shape[0]
        R = low.copy()
        if self.row_closed is not None:
            R[np.repeat(~open_, self.row_counts, axis=1)] = np.inf
        r = union_row(R, self.groups)
        a = A[np.arange(B), r]
        w = hi - lo
        sc = np.abs(a) * w + 1e-12 * w / np.maximum(w.max(axis=1, keepdims=True), 1e-300)
        return sc, np.where(a >= 0.0, lo, hi)

    def refine(self, lo, hi, low, unst, open_):
        """CROWN (in place) on the open boxes symbolic bounds come closest to closing."""
        pending = np.flatnonzero(~self._closed(low, open_))
        if pending.size == 0:
            return
        pr = box_priority(disjunct_scores(low[pending], self.groups), open_[pending])
        pick = pending[np.argsort(-pr, kind="stable")[: self.cfg.crown_batch]]
        lc, uc = batch_objective_bounds(self.packed, lo[pick], hi[pick], self.C, self.d,
                                        method="crown", return_unstable=True)
        low[pick] = np.maximum(low[pick], lc)
        unst[pick] = np.minimum(unst[pick], uc)
        self.stats["crown_boxes"] = self.stats.get("crown_boxes", 0) + pick.size

    def _closed(self, low, open_):
        sc = disjunct_scores(low, self.groups) > 0.0
        if open_ is not None:
            sc |= ~open_
        return sc.all(axis=1)

    def points(self, lo, hi, pts):
        """Candidate points (centres, then corners) and their per-disjunct margins."""
        if pts is None or self.cfg.points != "crown":
            return candidate_points(self.network, lo, hi, self.C, self.d, self.groups)
        P = np.vstack([0.5 * (lo + hi), pts])
        return P, disjunct_margins(self.network.forward(P), self.C, self.d, self.groups)

    def smear(self, lo, hi, open_, sc):
        """Split scores (B, n): the stored CROWN smear, or the centre-gradient smear."""
        if sc is None or self.cfg.smear_source != "crown":
            return smear_scores(self.network, lo, hi, self.C, self.d, self.groups, open_)
        return sc

    # ---- bisection -----------------------------------------------------------------
    def split(self, lo, hi, low, open_, can, sc, depth, pz):
        """Bisect every box; returns children (lo2, hi2, lower2, unstable2, parent index,
        smear2 or None, corners2 or None)."""
        B, n = lo.shape
        par = np.repeat(np.arange(B), 2)
        if self.cfg.split == "lookahead":
            q = n if not 0 < self.cfg.lookahead_dims < n else self.cfg.lookahead_dims
            if depth.size and depth.min() < self.cfg.lookahead_full_depth:
                q = n  # shallow boxes: every dimension (the top-3 smear missed 1_9 prop_7's cex)
            if q < n:
                sm = self.smear(lo, hi, open_, sc)
                sm = np.where(can, sm, -1.0)
                cand = np.argsort(-sm, axis=1, kind="stable")[:, :q]
            else:
                cand = np.tile(np.arange(n), (B, 1))
            L_lo, L_hi = lookahead_children(lo, hi, cand)
            op = np.repeat(open_, 2 * q, axis=0)
            L_low, L_un, L_sc, L_pts, L_z = self.bound(
                L_lo, L_hi, np.repeat(low, 2 * q, axis=0), op, method=self.cfg.lookahead_method,
                pz=(np.repeat(pz[0], 2 * q, axis=0), np.repeat(pz[1], 2 * q, axis=0)))
            pr = box_priority(disjunct_scores(L_low, self.groups), op)
            val = np.maximum(np.minimum(pr, 0.0).reshape(B, q, 2).sum(axis=2), -1e300)
            w = np.take_along_axis(hi - lo, cand, axis=1)
            val[~np.take_along_axis(can, cand, axis=1)] = -np.inf
            val += 1e-9 * w / np.maximum((hi - lo).max(axis=1, keepdims=True), 1e-300)
            pick = np.argmax(val, axis=1)
            rows = ((np.arange(B) * q + pick) * 2)[:, None] + np.arange(2)
            rows = rows.reshape(-1)
            lo2, hi2, low2, un2 = L_lo[rows], L_hi[rows], L_low[rows], L_un[rows]
            sc2 = None if L_sc is None else L_sc[rows]
            pts2 = None if L_pts is None else L_pts[rows]
            z2 = (L_z[0][rows], L_z[1][rows])
            if self.cfg.method == "hybrid" and self.cfg.lookahead_method == "symbolic":
                self.refine(lo2, hi2, low2, un2, open_[par])
            elif self.cfg.method == "crown" and self.cfg.lookahead_method == "symbolic":
                lc, uc, sc2, pts2, z2 = self.bound(lo2, hi2, low2, open_[par], method="crown",
                                                   pz=(pz[0][par], pz[1][par]))
                low2 = np.maximum(low2, lc)
                un2 = np.minimum(un2, uc)
            return lo2, hi2, low2, un2, par, sc2, pts2, z2
        sm = np.where(can, self.smear(lo, hi, open_, sc), -1.0)
        dims = np.argmax(sm, axis=1)
        lo2, hi2 = bisect(lo, hi, dims)
        low2, un2, sc2, pts2, z2 = self.bound(lo2, hi2, low[par], open_[par],
                                              pz=(pz[0][par], pz[1][par]))
        return lo2, hi2, low2, un2, par, sc2, pts2, z2
