"""One incremental, sparse, layered LP per case (:class:`LayeredLP`): the cell LPs and the
triangle relaxations of the CDCL search, by changing bounds and re-solving from the last basis.

Soundness contract as in :mod:`dpllnn.lp.highs`.
"""
from __future__ import annotations

import numpy as np

from ..network import Network
from .highs import IMAX, new_highs, status_name

__all__ = ["LayeredLP"]

_INF = np.inf


class LayeredLP:
    """One incremental, sparse, layered LP per case: cell LPs and triangle relaxations by bounds.

    Built once; every query only changes column/row bounds (and the slope coefficient of the
    triangle rows of unstable neurons) and re-solves from the previous basis (dual simplex).

    Variables ``x`` (inputs), then ``(z_k, a_k)`` per hidden layer, then ``t``.  Rows:

    - ``z_k - W_k a_{k-1} = b_k`` (``a_{-1} = x``);
    - per neuron ``R1: a - z`` and ``R2: a - s z``; by phase: *active* ``z >= 0``, ``R1 = 0``;
      *inactive* ``z <= 0``, ``a = 0``; *unstable, unassigned* (triangle) ``a >= 0``, ``R1 >= 0``,
      ``R2 <= -s l`` with ``s = u / (u - l)``; other rows free;
    - per stacked objective row ``r``: ``(C W_L)_r a_{L-1} - t <= d_r - (C b_L)_r``; only the rows
      of the queried disjunct are bounded.

    Columns ``z`` are boxed by the caller's sound bounds ``(L, U)`` (valid for every assignment
    extending ``phase``).  Every input of the box whose pre-activations have the signs of
    ``phase`` and whose output meets the disjunct gives a feasible point (with ``t <= 0``), so an
    infeasible LP proves the disjunct unreachable under ``phase``.  Soundness contract as for
    :class:`CellLP`: ``"infeasible"`` only when the LP with every row and column bound loosened by
    ``rtol * (1 + scale)`` is infeasible.

    Parameters
    ----------
    network : Network
    C : ndarray, shape (m, n_outputs); d : ndarray, shape (m,) -- stacked objective rows
    lb, ub : ndarray, shape (n_inputs,) -- the case's box
    L0, U0 : ndarray, shape (n_relus,) -- sound root bounds (scales of the loosening)
    rtol : float
    time_limit_s : float, optional -- per HiGHS call
    """

    def __init__(self, network: Network, C, d, lb, ub, L0, U0, rtol: float = 1e-6,
                 time_limit_s: float | None = None):
        C, d = self._set_problem(network, C, d, lb, ub, rtol)
        n_in = self.n_in
        sizes = [aff.n_out for aff in network.affines[:-1]]
        n = int(sum(sizes))
        self.n = n
        L0 = np.asarray(L0, dtype=np.float64).reshape(-1)
        U0 = np.asarray(U0, dtype=np.float64).reshape(-1)
        # column layout
        zcol = np.empty(n, dtype=np.int64)
        acol = np.empty(n, dtype=np.int64)
        col = n_in
        off = 0
        for n_k in sizes:
            zcol[off:off + n_k] = np.arange(col, col + n_k)
            acol[off:off + n_k] = np.arange(col + n_k, col + 2 * n_k)
            col += 2 * n_k
            off += n_k
        self.tcol = col
        ncol = col + 1
        self.zcol, self.acol, self.ncol = zcol, acol, ncol
        # magnitudes of the columns (for the loosening)
        xmag = np.maximum(np.abs(self.lb), np.abs(self.ub))
        zmag = np.maximum(np.abs(L0), np.abs(U0))
        zmag = np.where(np.isfinite(zmag), zmag, 0.0)
        amag = np.maximum(U0, 0.0)
        amag = np.where(np.isfinite(amag), amag, 0.0)
        self.zmag, self.amag = zmag, amag
        # rows as COO
        ri, ci, vi = [], [], []
        eq_rhs, eq_scale = [], []
        row = 0
        prev, prev_mag = np.arange(n_in), xmag
        off = 0
        for k, n_k in enumerate(sizes):
            W = np.asarray(network.affines[k].W, dtype=np.float64)
            b = np.asarray(network.affines[k].b, dtype=np.float64)
            r, c = np.nonzero(W)
            ri += [r + row, np.arange(n_k) + row]
            ci += [prev[c], zcol[off:off + n_k]]
            vi += [-W[r, c], np.ones(n_k)]
            eq_rhs.append(b)
            eq_scale.append(1.0 + np.abs(b) + np.abs(W) @ prev_mag + zmag[off:off + n_k])
            row += n_k
            prev, prev_mag = acol[off:off + n_k], amag[off:off + n_k]
            off += n_k
        self.r_eq = np.arange(0, row)
        self.eq_rhs = np.concatenate(eq_rhs) if eq_rhs else np.zeros(0)
        self.eq_loos = self.rtol * (np.concatenate(eq_scale) if eq_scale else np.zeros(0))
        self.r1 = np.arange(row, row + n)
        ri += [self.r1, self.r1]
        ci += [acol, zcol]
        vi += [np.ones(n), -np.ones(n)]
        row += n
        self.r2 = np.arange(row, row + n)
        ri += [self.r2, self.r2]
        ci += [acol, zcol]
        vi += [np.ones(n), np.full(n, -0.5)]
        self.slope = np.full(n, 0.5)
        row += n
        Wl = np.asarray(network.affines[-1].W, dtype=np.float64)
        bl = np.asarray(network.affines[-1].b, dtype=np.float64)
        CW = C @ Wl
        m = CW.shape[0]
        self.m = m
        r, c = np.nonzero(CW)
        ri += [r + row, np.arange(m) + row]
        ci += [prev[c], np.full(m, ncol - 1)]
        vi += [CW[r, c], -np.ones(m)]
        self.r_out = np.arange(row, row + m)
        self.out_rhs = d - C @ bl
        self.out_loos = self.rtol * (1.0 + np.abs(self.out_rhs) + np.abs(CW) @ prev_mag)
        row += m
        self.nrow = row
        self._pass_model(np.concatenate(ri), np.concatenate(ci), np.concatenate(vi), row, ncol,
                         time_limit_s)

    def _set_problem(self, network, C, d, lb, ub, rtol):
        """Store the network, box and loosening tolerance; return ``C`` (m, n_out) and ``d``
        (m,) as float64 arrays."""
        self.network = network
        self.rtol = float(rtol)
        self.lb = np.asarray(lb, dtype=np.float64).reshape(-1)
        self.ub = np.asarray(ub, dtype=np.float64).reshape(-1)
        self.n_in = network.n_inputs
        return (np.atleast_2d(np.asarray(C, dtype=np.float64)),
                np.asarray(d, dtype=np.float64).reshape(-1))

    def _pass_model(self, ri, ci, vi, row, ncol, time_limit_s):
        """Hand the rows (COO ``ri, ci, vi``; ``row`` rows, ``ncol`` columns, objective ``t``
        in the last column, inputs boxed) to a new HiGHS instance; set the solve state."""
        import highspy
        n_in = self.n_in
        order = np.argsort(ri, kind="stable")
        ri, ci, vi = ri[order], ci[order], vi[order]
        start = np.searchsorted(ri, np.arange(row + 1)).astype(np.int32)
        lp = highspy.HighsLp()
        lp.num_col_ = ncol
        lp.num_row_ = row
        cost = np.zeros(ncol)
        cost[-1] = 1.0
        lp.col_cost_ = cost
        lp.col_lower_ = np.full(ncol, -_INF)
        lp.col_upper_ = np.full(ncol, _INF)
        lp.col_lower_[:n_in] = self.lb
        lp.col_upper_[:n_in] = self.ub
        lp.row_lower_ = np.full(row, -_INF)
        lp.row_upper_ = np.full(row, _INF)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_ = ncol
        lp.a_matrix_.num_row_ = row
        lp.a_matrix_.start_ = start
        lp.a_matrix_.index_ = ci.astype(np.int32)
        lp.a_matrix_.value_ = vi
        h = new_highs()
        h.setOptionValue("presolve", "off")
        # measured on mnist_fc: without scaling, warm-started re-solves after bound changes take
        # 10-50x fewer simplex iterations (scaling made HiGHS start nearly cold)
        h.setOptionValue("simplex_scale_strategy", 0)
        h.passModel(lp)
        self._h = h
        self._limit = None if time_limit_s is None else float(time_limit_s)
        self._all_cols = np.arange(ncol, dtype=np.int32)
        self._all_rows = np.arange(row, dtype=np.int32)
        self.n_solves = 0
        self.last_t = float("nan")
        #: the last ``solve`` stopped a HiGHS run at its iteration or time limit
        self.limited = False
        self._iterations = IMAX
        M = highspy.HighsModelStatus
        self._limit_st = (M.kIterationLimit, M.kTimeLimit)

    def set_time_limit(self, s):
        """Limit the next calls to ``s`` seconds each (None: no limit).

        HiGHS compares ``time_limit`` with the instance's cumulative run clock (measured: once
        hit, every later run stops at once), so the limit is re-based at each call."""
        self._limit = None if s is None else float(max(s, 0.01))

    def _bounds(self, phase, L, U, rows_lo, rows_hi):
        """Plain bounds ``(col_lo, col_hi, row_lo, row_hi, loose_col, loose_row)``."""
        n, n_in = self.n, self.n_in
        ph = np.asarray(phase).reshape(-1)
        L = np.asarray(L, dtype=np.float64).reshape(-1)
        U = np.asarray(U, dtype=np.float64).reshape(-1)
        act = (ph > 0) | ((ph == 0) & (L >= 0.0))
        ina = ~act & ((ph < 0) | ((ph == 0) & (U <= 0.0)))
        tri = ~act & ~ina
        clo = np.empty(self.ncol)
        chi = np.empty(self.ncol)
        clo[:n_in], chi[:n_in] = self.lb, self.ub
        zlo = np.where(act, np.maximum(L, 0.0), L)
        zhi = np.where(ina, np.minimum(U, 0.0), U)
        clo[self.zcol], chi[self.zcol] = zlo, zhi
        clo[self.acol] = np.where(act, zlo, 0.0)
        chi[self.acol] = np.where(act, np.maximum(zhi, 0.0), np.where(ina, 0.0, np.maximum(U, 0.0)))
        clo[-1], chi[-1] = -_INF, _INF
        rlo = np.full(self.nrow, -_INF)
        rhi = np.full(self.nrow, _INF)
        rlo[self.r_eq] = self.eq_rhs
        rhi[self.r_eq] = self.eq_rhs
        r1lo = np.where(act | tri, 0.0, -_INF)
        r1hi = np.where(act, 0.0, _INF)
        rlo[self.r1], rhi[self.r1] = r1lo, r1hi
        r1l = self.rtol * (1.0 + self.amag + self.zmag)
        # triangle slopes
        ti = np.flatnonzero(tri)
        s = U[ti] / (U[ti] - L[ti])
        r2hi = np.full(n, _INF)
        r2hi[ti] = -s * L[ti]
        r2l = np.zeros(n)
        r2l[ti] = self.rtol * (1.0 + s * np.abs(L[ti]) + self.amag[ti] + s * self.zmag[ti])
        rhi[self.r2] = r2hi
        h = self._h
        chg = ti[np.abs(self.slope[ti] - s) > 1e-12 * (1.0 + s)]
        if chg.size:
            sc = U[chg] / (U[chg] - L[chg])
            r2, zc = self.r2, self.zcol
            for j, v in zip(chg.tolist(), sc.tolist()):
                h.changeCoeff(int(r2[j]), int(zc[j]), -v)
            self.slope[chg] = sc
        rlo[self.r_out], rhi[self.r_out] = rows_lo, rows_hi
        col_l = self.rtol * (1.0 + np.maximum(np.abs(np.where(np.isfinite(clo), clo, 0.0)),
                                              np.abs(np.where(np.isfinite(chi), chi, 0.0))))
        row_l = np.zeros(self.nrow)
        row_l[self.r_eq] = self.eq_loos
        row_l[self.r1] = r1l
        row_l[self.r2] = r2l
        row_l[self.r_out] = self.out_loos
        return clo, chi, rlo, rhi, col_l, row_l

    def _run(self, clo, chi, rlo, rhi):
        h = self._h
        if np.any(clo > chi):
            return "infeasible"
        h.changeColsBounds(self.ncol, self._all_cols, clo, chi)
        h.changeRowsBounds(self.nrow, self._all_rows, rlo, rhi)
        self.n_solves += 1
        h.setOptionValue("time_limit", _INF if self._limit is None else h.getRunTime() + self._limit)
        h.setOptionValue("simplex_iteration_limit", self._iterations)
        h.run()
        st = status_name(h)
        if h.getModelStatus() in self._limit_st:
            self.limited = True
        if st == "unbounded_or_infeasible":
            st = "unknown"
        return st

    def solve(self, phase, L, U, row_range, mode="cell", max_iterations=None):
        """Query the disjunct made of the stacked rows ``row_range = (r0, r1)``.

        Parameters
        ----------
        phase : ndarray (n_relus,), int8 -- +1 / -1 / 0 (0: stable by ``L, U``, or triangle)
        L, U : ndarray (n_relus,) -- sound bounds of the pre-activations under ``phase``
        row_range : (int, int)
        mode : ``"cell"`` or ``"refute"``.  Both first solve the loosened LP with ``t <= 0``
            (infeasible: certified); ``"cell"`` then minimises ``t`` on the plain LP for a
            candidate, ``"refute"`` stops there.
        max_iterations : int or None -- simplex iterations per HiGHS run (None: no limit); a
            run stopped by it (or by the time limit) answers ``"unknown"`` and sets
            ``self.limited``.  An iteration limit is deterministic where a time limit is not
            (the CDCL theory's relaxation LPs use it).

        Returns
        -------
        ``(status, x)``: ``"feasible"`` (plain LP optimum with ``t <= 0``; ``x`` a candidate
        that the caller must replay), ``"infeasible"`` (loosened LP with ``t <= 0`` infeasible:
        certified), ``"unknown"`` (``x``: a best-effort candidate -- in ``"refute"`` mode the
        input part of the loosened relaxation's optimum -- or None).
        """
        r0, r1 = row_range
        self.limited = False
        self._iterations = IMAX if max_iterations is None else int(max_iterations)
        rows_lo = np.full(self.m, -_INF)
        rows_hi = np.full(self.m, _INF)
        rows_hi[r0:r1] = self.out_rhs[r0:r1]
        clo, chi, rlo, rhi, cl, rl = self._bounds(phase, L, U, rows_lo, rows_hi)
        h = self._h
        # the loosened LP with t <= 0 first: most queries of a search are infeasible cells
        chi_t = chi.copy()
        chi_t[-1] = 0.0
        st2 = self._run(clo - cl, chi_t + cl, rlo - rl, rhi + rl)
        if st2 == "infeasible":
            return "infeasible", None
        x = None
        if st2 == "optimal":
            sol = np.asarray(h.getSolution().col_value, dtype=np.float64)
            x = np.clip(sol[:self.n_in], self.lb, self.ub)
        if mode != "cell":
            return "unknown", x
        if not np.any(clo > chi):
            st = self._run(clo, chi, rlo, rhi)
            if st == "optimal":
                sol = np.asarray(h.getSolution().col_value, dtype=np.float64)
                xp = np.clip(sol[:self.n_in], self.lb, self.ub)
                t = float(sol[-1])
                self.last_t = t
                if t <= 0.0:
                    return "feasible", xp
        return "unknown", x
