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

__all__ = ["CellLP", "lp_minimize", "compose_cell"]

_INF = np.inf


def _highs():
    import highspy

    h = highspy.Highs()
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
    h = _highs()
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
        self._h = _highs()
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
