"""The LP side of the ReLU theory (:class:`dpllnn.search.theory.ReluTheory`): relaxation LPs at
search nodes (on the search's path, or on the background thread of :mod:`dpllnn.search.asynclp`),
the exact LP of a complete assignment (``check_model``), and the candidates both produce.

Soundness as in the theory's module docstring: a disjunct is refuted only by an LP
``"infeasible"`` (certified on the loosened LP, :mod:`dpllnn.lp.highs`); a complete assignment
is blocked with a clause either way, but one blocked without that certificate marks the search
``incomplete`` (never ``unsat``); a candidate point becomes ``sat`` only through
:func:`dpllnn.validate.check_counterexample`.
"""
from __future__ import annotations

import time

import numpy as np

from ..bounds.threads import lent_threads
from ..validate import check_counterexample
from .asynclp import LPJob, refute_lp

__all__ = ["TheoryLP"]


class TheoryLP:
    """Mixin of :class:`~dpllnn.search.theory.ReluTheory`: its LP and counterexample methods.

    Uses the theory's state: ``llp`` (the case's LayeredLP, or None), ``llp_lock``, ``async_lp``,
    ``lp_unstable``/``lp_iterations``/``lp_time_limit_s``/``lp_stop_first``/``lp_attack``, the
    phase and selector assignment, the snapshots, and ``cfg`` (TheorySettings)."""

    # ---- relaxation LPs at nodes -------------------------------------------------------------
    def _relaxation_lp(self, snap):
        """Refute open disjuncts with the triangle-relaxation LP when few neurons are unstable.

        With a spare core (``lent_threads() >= 2``) and ``async_lp`` set, the LP runs on its
        background thread (``dpllnn.search.asynclp``) and its refutations come back as clauses
        (:meth:`_collect_lp`); a node whose LP would wait for the thread gets none, and so does
        every node while the thread's LP time exceeds ``cfg.async_lp_share`` of the wall time."""
        if self.llp is None:
            return
        lbd = snap.lbd
        n_free_unst = int(np.count_nonzero((self.phase == 0) & (lbd.lb < 0.0) & (lbd.ub > 0.0)))
        if n_free_unst > self.lp_unstable:
            return
        if self.async_lp is not None and lent_threads() >= 2:
            if self.async_lp.busy():
                return
            now = time.monotonic()
            if self.t_async0 is None:
                self.t_async0 = now
            elif self.t_lp_async > self.cfg.async_lp_share * (now - self.t_async0):
                return
            snap.lp_done = True
            todo = self._lp_todo(snap)
            if todo:
                job = LPJob(self.phase.copy(), lbd.lb.copy(), lbd.ub.copy(),
                            [(i, (self.rows[i], self.rows[i + 1])) for i in todo],
                            self.lp_time_limit_s, self.deadline, self.lp_stop_first,
                            max_iterations=self.lp_iterations)
                job.neg = self._neg_assigned()
                self.async_lp.submit(job)
                self.n_lp_jobs += 1
            return
        snap.lp_done = True
        for i in self._lp_todo(snap):
            if time.monotonic() >= self.deadline:
                return
            t = time.monotonic()
            limit = min(self.lp_time_limit_s, self.deadline - time.monotonic())
            st, xr, limited = refute_lp(self.llp, self.llp_lock, self.phase, lbd.lb, lbd.ub,
                                        (self.rows[i], self.rows[i + 1]), limit,
                                        self.lp_iterations)
            ok = st == "infeasible"
            if not ok and xr is not None and self.lp_attack:
                self.t_lp += time.monotonic() - t
                self._attack_from(xr, self.disj[i])
                if self.cex is not None:
                    return
                t = time.monotonic()
            self.t_lp += time.monotonic() - t
            self.n_lp += 1
            if not ok and self._lp_too_slow(limited):
                return
            if ok:
                snap.refuted[i] = True
                self.n_lp_refuted += 1
            elif self.lp_stop_first:
                return

    def _lp_todo(self, snap):
        """Disjuncts to try at ``snap``: open and not deselected; the selected ones first (a
        refutation is a conflict), then the hardest by the objective bound (the node stays open
        as soon as one disjunct survives the LP)."""
        todo = [i for i in range(len(self.disj)) if not snap.refuted[i] and self.sel_val[i] != -1]
        lo = snap.obj_lower
        todo.sort(key=lambda i: (-int(self.sel_val[i]),
                                 float(np.max(lo[self.rows[i]:self.rows[i + 1]]))))
        return todo

    def _lp_too_slow(self, limited):
        """Count an LP stopped by its limit (``limited``: ``lp_iterations`` simplex iterations,
        or the time limit); after three, narrow the LP to small nodes (at most 12 free unstable
        neurons), then switch it off.  True when the LP was narrowed."""
        if not limited:
            return False
        self.lp_slow += 1
        if self.lp_slow >= 3:
            self.lp_slow = 0
            self.lp_unstable = 12 if self.lp_unstable > 12 else -1
            return True
        return False

    def _collect_lp(self):
        """Take the background LP's finished jobs: each refutation becomes the clause
        ``-sel`` or not all of the job's phases (pending, for the solver); each LP optimum a
        candidate (``_attack_from``).  When the thread failed: ``lp_error`` set and the solver
        stopped (the driver raises; an exception inside a solver callback would not reach it)."""
        for job in self.async_lp.finished():
            if job.error is not None:
                self.lp_error = f"relaxation LP thread: {job.error}"
                self.incomplete = self.stop = True
                return
            for i, st, x, dt, limited in job.out:
                self.t_lp_async += dt
                self.n_lp += 1
                if st == "infeasible":
                    self.n_lp_refuted += 1
                    self.pending.append([-self.sel_vars[i]] + job.neg)
                    continue
                self._lp_too_slow(limited)
                if x is not None and self.lp_attack and self.cex is None:
                    self._attack_from(x, self.disj[i])

    # ---- complete assignments ----------------------------------------------------------------
    def check_model(self, model):
        """Decide the cell of a complete assignment with the LP; False with clauses if rejected."""
        if self.stop or self._time_up():
            return False
        n = self.n
        ph = np.empty(n, dtype=np.int8)
        val = {abs(int(l)): int(l) > 0 for l in model}
        for j in range(n):
            ph[j] = 1 if val.get(j + 1, False) else -1
        sel = [i for i, v in enumerate(self.sel_vars) if val.get(v, False)]
        neg = (-(np.arange(n) + 1) * ph).tolist()
        ok_to_block = True
        for i in sel:
            dj = self.disj[i]
            t = time.monotonic()
            LU = self._bounds_for(ph) if self.llp is not None else None
            if LU is None:                  # no LP to decide the cell: blocked without proof
                st, x = "unknown", None
            else:
                with self.llp_lock:         # the background LP thread shares llp
                    self.llp.set_time_limit(max(self.deadline - time.monotonic(), 0.01))
                    st, x = self.llp.solve(ph, LU[0], LU[1], (self.rows[i], self.rows[i + 1]))
            self.t_lp += time.monotonic() - t
            self.n_lp += 1
            if st == "feasible" or (st == "unknown" and x is not None):
                cex = self._validate(x, dj)
                if cex is not None:
                    self.cex = cex
                    self.stop = True
                    return False
                if st == "feasible":
                    self.x_ref = x
            if st != "infeasible":
                ok_to_block = False
            self.pending.append([-self.sel_vars[i]] + neg)
            self.n_blocked += 1
        if not ok_to_block:
            self.incomplete = True
        if not sel:     # cannot happen (some selector is true), but never accept silently
            self.pending.append(neg)
            self.incomplete = True
        return False

    def _attack_from(self, x, dj):
        """A relaxation optimum as a candidate: replay it (cheap); PGD from it within a time share."""
        t = time.monotonic()
        if dj.margin(self.network.forward(x)) <= 0.0 or \
                self.t_attack < self.cfg.pgd_share * (t - self.t0):
            cex = self._validate(x, dj)
            if cex is not None:
                self.cex = cex
                self.stop = True
        self.t_attack += time.monotonic() - t

    def _bounds_for(self, ph):
        """Pre-activation bounds of the top snapshot whose phases ``ph`` extends."""
        for sn in reversed(self.snaps):
            sp = sn.phase
            if np.all((sp == 0) | (sp == ph)):
                return sn.lbd.lb, sn.lbd.ub
        return None          # cannot happen (the root snapshot holds only fixed phases)

    def _validate(self, x, dj):
        from ..attack import falsify_box, snap_float32, validate_candidate

        cex = validate_candidate(self.network, self.spec, x, self.lb, self.ub)
        if cex is None:
            xb, mb = falsify_box(self.network, self.lb, self.ub, dj.C, dj.d, seed=len(self.candidates),
                                 steps=30, restarts=4, x0=x[None, :], deadline=self.deadline)
            self.candidates.append(xb)
            if mb <= 0:
                cex = check_counterexample(self.network, self.spec,
                                           snap_float32(xb, self.lb, self.ub))
        return cex
