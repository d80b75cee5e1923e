"""Linear programs on HiGHS (highspy): the cell LP of a complete phase assignment, and a generic
``minimize c @ x`` helper.

Soundness contract.  ``"infeasible"`` may be used by the search to prune (claim there is no
counterexample in that cell), so it is only reported when HiGHS declares infeasible an LP in which
every constraint -- including the box -- was *loosened* by ``rtol * (1 + row scale)``.  Rounding in
the composed matrices and HiGHS' own tolerances are orders of magnitude below that loosening.
``"feasible"`` means HiGHS found a point of the plain (not loosened) LP; the point is only a
candidate: the caller must replay it with :func:`dpllnn.validate.check_counterexample` and treat a
rejected candidate as *unknown*, never as *unsat*.
"""
from __future__ import annotations

import numpy as np

from ..network import Network

__all__ = ["CellLP", "LayeredLP", "lp_minimize", "compose_cell"]

_INF = np.inf
#: HiGHS's "no limit" for integer options (kHighsIInf)
_IMAX = 2 ** 31 - 1


_BANNER_SILENCED = False


def new_highs():
    """A quiet ``highspy.Highs`` (``output_flag`` off).

    highspy 1.16 prints its banner to the C-level stdout when the first instance of a process is
    constructed, before any option can be set; that line broke ``dpllnn verify``'s contract (the
    verdict, or the JSON object, is the first line of stdout).  The first construction therefore
    runs with file descriptor 1 pointed at ``/dev/null`` (forked workers inherit the
    already-printed state)."""
    import os
    import sys

    import highspy

    global _BANNER_SILENCED
    if _BANNER_SILENCED:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_SILENCED = True
    h.setOptionValue("output_flag", False)
    return h


def _status_name(h) -> str:
    import highspy

    s = h.getModelStatus()
    M = highspy.HighsModelStatus
    if s == M.kOptimal:
        return "optimal"
    if s == M.kInfeasible:
        return "infeasible"
    if s == M.kUnbounded:
        return "unbounded"
    if s == M.kUnboundedOrInfeasible:
        return "unbounded_or_infeasible"
    return "unknown"


def _run(h, c, A, row_lo, row_hi, col_lo, col_hi, time_limit_s=None):
    """Pass a row-wise dense LP ``min c@x, row_lo <= A@x <= row_hi, col_lo <= x <= col_hi``."""
    import highspy

    A = np.asarray(A, dtype=np.float64).reshape(len(row_lo), len(c))
    lp = highspy.HighsLp()
    lp.num_col_ = len(c)
    lp.num_row_ = len(row_lo)
    lp.col_cost_ = np.asarray(c, dtype=np.float64)
    lp.col_lower_ = np.asarray(col_lo, dtype=np.float64)
    lp.col_upper_ = np.asarray(col_hi, dtype=np.float64)
    lp.row_lower_ = np.asarray(row_lo, dtype=np.float64)
    lp.row_upper_ = np.asarray(row_hi, dtype=np.float64)
    nz = A != 0.0
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = len(c)
    lp.a_matrix_.num_row_ = len(row_lo)
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(nz.sum(axis=1))]).astype(np.int32)
    lp.a_matrix_.index_ = np.nonzero(nz)[1].astype(np.int32)
    lp.a_matrix_.value_ = A[nz]
    h.clearModel()
    h.passModel(lp)
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    h.run()
    st = _status_name(h)
    if st == "unbounded_or_infeasible":  # presolve could not tell: ask the simplex
        h.setOptionValue("presolve", "off")
        h.run()
        h.setOptionValue("presolve", "choose")
        st = _status_name(h)
        if st == "unbounded_or_infeasible":
            st = "unknown"
    return st


def _rerun(h, row_lo, row_hi, col_lo, col_hi):
    """Change every row and column bound of the loaded model and re-solve (warm start)."""
    nr, nc = len(row_lo), len(col_lo)
    if nr:
        h.changeRowsBounds(nr, np.arange(nr, dtype=np.int32), np.asarray(row_lo, dtype=np.float64),
                           np.asarray(row_hi, dtype=np.float64))
    h.changeColsBounds(nc, np.arange(nc, dtype=np.int32), np.asarray(col_lo, dtype=np.float64),
                       np.asarray(col_hi, dtype=np.float64))
    h.run()
    st = _status_name(h)
    if st == "unbounded_or_infeasible":
        h.setOptionValue("presolve", "off")
        h.run()
        h.setOptionValue("presolve", "choose")
        st = _status_name(h)
    return "unknown" if st == "unbounded_or_infeasible" else st


def lp_minimize(c, A_ub=None, b_ub=None, bounds=None, A_eq=None, b_eq=None, time_limit_s=None):
    """Minimise ``c @ x`` subject to ``A_ub @ x <= b_ub``, ``A_eq @ x == b_eq`` and bounds.

    Parameters
    ----------
    c : ndarray, shape (n,), float64
    A_ub : ndarray, shape (m, n), optional; b_ub : ndarray, shape (m,)
    bounds : sequence of n pairs ``(lo, hi)`` (scipy style; None or +-inf for no bound), optional
        -- unlike scipy the default is free variables, not ``x >= 0``
    A_eq : ndarray, shape (k, n), optional; b_eq : ndarray, shape (k,)
    time_limit_s : float, optional

    Returns
    -------
    status : str -- ``"optimal"``, ``"infeasible"``, ``"unbounded"`` or ``"unknown"``
    value : float -- optimal objective (``nan`` unless optimal)
    x : ndarray, shape (n,), float64, or None -- the optimal point
    """
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    n = c.shape[0]
    if bounds is None:
        lo, hi = np.full(n, -_INF), np.full(n, _INF)
    else:
        bounds = np.array([[-_INF if lo_ is None else lo_, _INF if hi_ is None else hi_]
                           for lo_, hi_ in bounds], dtype=np.float64).reshape(n, 2)
        lo, hi = bounds[:, 0], bounds[:, 1]
    rows, rlo, rhi = [], [], []
    if A_ub is not None and len(b_ub):
        rows.append(np.asarray(A_ub, dtype=np.float64).reshape(-1, n))
        rhi.append(np.asarray(b_ub, dtype=np.float64).reshape(-1))
        rlo.append(np.full(rhi[-1].shape, -_INF))
    if A_eq is not None and len(b_eq):
        rows.append(np.asarray(A_eq, dtype=np.float64).reshape(-1, n))
        be = np.asarray(b_eq, dtype=np.float64).reshape(-1)
        rlo.append(be)
        rhi.append(be)
    A = np.vstack(rows) if rows else np.zeros((0, n))
    rlo = np.concatenate(rlo) if rlo else np.zeros(0)
    rhi = np.concatenate(rhi) if rhi else np.zeros(0)
    h = new_highs()
    st = _run(h, c, A, rlo, rhi, lo, hi, time_limit_s)
    if st != "optimal":
        return st, float("nan"), None
    x = np.asarray(h.getSolution().col_value, dtype=np.float64)
    return st, float(h.getInfo().objective_function_value), x


def compose_cell(network: Network, phase: np.ndarray):
    """The affine maps of a cell: every pre-activation and the output as functions of ``x``.

    Parameters
    ----------
    network : Network
    phase : ndarray, shape (n_relus,), int8 -- +1 active, -1 inactive (flat, layer-major);
        0 (unknown) is treated as inactive here, callers pass complete assignments

    Returns
    -------
    A_hidden : ndarray, shape (n_relus, n_inputs); c_hidden : ndarray, shape (n_relus,)
        ``z = A_hidden @ x + c_hidden`` on the cell
    A_out : ndarray, shape (n_outputs, n_inputs); c_out : ndarray, shape (n_outputs,)
    """
    phase = np.asarray(phase).reshape(-1)
    if phase.shape[0] != network.n_relus:
        raise ValueError(f"phase has {phase.shape[0]} entries, network has {network.n_relus} ReLUs")
    A = network.affines[0].W.copy()
    c = network.affines[0].b.copy()
    As, cs = [], []
    off = 0
    for aff in network.affines[1:]:
        k = A.shape[0]
        As.append(A)
        cs.append(c)
        act = (phase[off:off + k] > 0).astype(np.float64)
        off += k
        A = aff.W @ (act[:, None] * A)
        c = aff.W @ (act * c) + aff.b
    n_in = network.n_inputs
    A_h = np.vstack(As) if As else np.zeros((0, n_in))
    c_h = np.concatenate(cs) if cs else np.zeros(0)
    return A_h, c_h, A, c


class CellLP:
    """The LP of one cell (complete phase assignment) over the input variables ``x`` only.

    Variables ``(x, t)``.  Constraints: ``lb <= x <= ub``; active neurons ``z_j(x) >= 0``,
    inactive ``z_j(x) <= 0``; disjunct rows ``(C @ y(x) - d)_i <= t``.  Objective: minimise ``t``.

    Parameters
    ----------
    network : Network
    rtol : float -- loosening used for the ``"infeasible"`` certificate, relative to
        ``1 + |constant| + sum_j |A_ij| * max(|lb_j|, |ub_j|)`` of each row
    time_limit_s : float, optional -- per HiGHS call (a hit gives ``"unknown"``)
    """

    def __init__(self, network: Network, rtol: float = 1e-6, time_limit_s: float | None = None):
        self.network = network
        self.rtol = float(rtol)
        self.time_limit_s = time_limit_s
        self._h = new_highs()
        self.last_t = float("nan")
        self.n_solves = 0

    def solve(self, lb, ub, phase, C, d, objective: str = "feasibility"):
        """Decide whether the cell ``phase`` of the box meets the disjunct ``C @ y <= d``.

        Parameters
        ----------
        lb, ub : ndarray, shape (n_inputs,), float64
        phase : ndarray, shape (n_relus,), int8 -- complete assignment (+1 / -1)
        C : ndarray, shape (m, n_outputs); d : ndarray, shape (m,)
        objective : ``"feasibility"`` or ``"max_margin"``

        Returns
        -------
        With ``objective="feasibility"``: ``(status, x)``

        - ``"feasible"``: ``x`` (shape (n_inputs,)) lies in the box, in the cell and satisfies the
          disjunct up to HiGHS tolerances, at the deepest point (minimal ``t``); a candidate only.
        - ``"infeasible"``: even the loosened LP is infeasible: no counterexample in this cell.
        - ``"unknown"``: neither could be established (boundary case or solver failure); ``x``
          may hold a best-effort candidate or be None.

        With ``objective="max_margin"``: ``(status, x, t)`` where ``t`` is the optimum of
        ``min max_i (C @ y - d)_i`` over the cell (``t <= 0``: the disjunct is reachable).
        ``"infeasible"`` then means the cell itself (box and phases, loosened) is empty,
        ``"feasible"`` that the plain LP was solved to optimality, ``"unknown"`` anything else
        (including a cell that is only non-empty once loosened; ``t`` is then the loosened
        optimum).
        """
        if objective not in ("feasibility", "max_margin"):
            raise ValueError(f"unknown objective {objective!r}")
        net = self.network
        lb = np.asarray(lb, dtype=np.float64).reshape(-1)
        ub = np.asarray(ub, dtype=np.float64).reshape(-1)
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        d = np.asarray(d, dtype=np.float64).reshape(-1)
        phase = np.asarray(phase).reshape(-1)
        n = net.n_inputs
        if np.any(lb > ub):
            return ("infeasible", None) if objective == "feasibility" else \
                ("infeasible", None, _INF)
        A_h, c_h, A_o, c_o = compose_cell(net, phase)
        s = np.where(phase > 0, -1.0, 1.0)            # active: -z <= 0; inactive: z <= 0
        P, p = s[:, None] * A_h, -s * c_h              # P @ x <= p
        D, e = C @ A_o, d - C @ c_o                    # D @ x - e <= t
        m = D.shape[0]
        A = np.zeros((P.shape[0] + m, n + 1))
        A[:P.shape[0], :n] = P
        A[P.shape[0]:, :n] = D
        A[P.shape[0]:, n] = -1.0
        rhi = np.concatenate([p, e])
        xmax = np.maximum(np.abs(lb), np.abs(ub))
        loos = self.rtol * (1.0 + np.abs(rhi) + np.abs(A[:, :n]) @ xmax)
        box_loos = self.rtol * (1.0 + xmax)
        rlo = np.full(rhi.shape, -_INF)
        cost = np.zeros(n + 1)
        cost[n] = 1.0
        t_lo = -_INF if m else 0.0
        t_hi = _INF if m else 0.0
        self.n_solves += 1
        h = self._h
        st = _run(h, cost, A, rlo, rhi, np.append(lb, t_lo), np.append(ub, t_hi),
                  self.time_limit_s)
        x = t = None
        if st == "optimal":
            sol = np.asarray(h.getSolution().col_value, dtype=np.float64)
            x, t = np.clip(sol[:n], lb, ub), float(sol[n]) if m else -_INF
            self.last_t = t
            if objective == "max_margin":
                return "feasible", x, t
            if t <= 0.0:
                return "feasible", x
        elif st == "unbounded":  # cannot happen with a non-empty disjunct on a bounded box
            st = "unknown"
        # not established feasible: certify infeasibility on the loosened LP
        t_hi2 = (_INF if objective == "max_margin" else 0.0) if m else 0.0
        st2 = _rerun(h, rlo, rhi + loos, np.append(lb - box_loos, t_lo),
                     np.append(ub + box_loos, t_hi2))
        if st2 == "infeasible":
            return ("infeasible", None) if objective == "feasibility" else \
                ("infeasible", None, _INF)
        if st2 == "optimal" and x is None:
            sol = np.asarray(h.getSolution().col_value, dtype=np.float64)
            x, t = np.clip(sol[:n], lb, ub), float(sol[n]) if m else -_INF
        self.last_t = float("nan") if t is None else t
        if objective == "max_margin":
            return "unknown", x, (float("nan") if t is None else t)
        return "unknown", x


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

        self.network = network
        self.rtol = float(rtol)
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        d = np.asarray(d, dtype=np.float64).reshape(-1)
        self.lb = np.asarray(lb, dtype=np.float64).reshape(-1)
        self.ub = np.asarray(ub, dtype=np.float64).reshape(-1)
        n_in = network.n_inputs
        sizes = [aff.n_out for aff in network.affines[:-1]]
        n = int(sum(sizes))
        self.n_in, self.n = n_in, n
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
        self._iterations = _IMAX
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
        st = _status_name(h)
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
        self._iterations = _IMAX if max_iterations is None else int(max_iterations)
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
