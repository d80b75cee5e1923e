"""The HiGHS (highspy) plumbing: a quiet solver, status names, loading and re-solving a
model, and a generic ``minimize c @ x``.  The LPs of the search build on it:
:mod:`dpllnn.lp.cell` (the cell LP of a complete phase assignment) and :mod:`dpllnn.lp.layered`
(the incremental layered LP of a case).

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

__all__ = ["new_highs", "status_name", "solve_dense", "resolve_bounds", "lp_minimize", "IMAX"]

_INF = np.inf
#: HiGHS's "no limit" for integer options (kHighsIInf)
IMAX = 2 ** 31 - 1


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
    # One thread for every model of the process.  HiGHS keeps one thread scheduler per
    # process, made at the first run with that run's ``threads``; a forked child (a bench
    # executor, the soundness campaign's pool, a search worker) inherits it without its
    # threads, and a MILP's parallel root evaluation then waits for them forever (seen: 32 min
    # in TaskGroup::~TaskGroup past a 5 s limit).  With one thread there are none to lose; the
    # simplex runs serially anyway, and the search's parallelism is its worker processes
    h.setOptionValue("threads", 1)
    return h


def status_name(h) -> str:
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


def solve_dense(h, c, A, row_lo, row_hi, col_lo, col_hi, time_limit_s=None):
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
    st = status_name(h)
    if st == "unbounded_or_infeasible":  # presolve could not tell: ask the simplex
        h.setOptionValue("presolve", "off")
        h.run()
        h.setOptionValue("presolve", "choose")
        st = status_name(h)
        if st == "unbounded_or_infeasible":
            st = "unknown"
    return st


def resolve_bounds(h, row_lo, row_hi, col_lo, col_hi):
    """Change every row and column bound of the loaded model and re-solve (warm start)."""
    nr, nc = len(row_lo), len(col_lo)
    if nr:
        h.changeRowsBounds(nr, np.arange(nr, dtype=np.int32), np.asarray(row_lo, dtype=np.float64),
                           np.asarray(row_hi, dtype=np.float64))
    h.changeColsBounds(nc, np.arange(nc, dtype=np.int32), np.asarray(col_lo, dtype=np.float64),
                       np.asarray(col_hi, dtype=np.float64))
    h.run()
    st = status_name(h)
    if st == "unbounded_or_infeasible":
        h.setOptionValue("presolve", "off")
        h.run()
        h.setOptionValue("presolve", "choose")
        st = status_name(h)
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
    st = solve_dense(h, c, A, rlo, rhi, lo, hi, time_limit_s)
    if st != "optimal":
        return st, float("nan"), None
    x = np.asarray(h.getSolution().col_value, dtype=np.float64)
    return st, float(h.getInfo().objective_function_value), x
