"""The LP of one cell (a complete phase assignment) over the input variables only.

Soundness contract as in :mod:`dpllnn.lp.highs`: ``"infeasible"`` only on the loosened LP,
``"feasible"`` only a candidate for :func:`dpllnn.validate.check_counterexample`.
"""
from __future__ import annotations

import numpy as np

from ..network import Network
from .highs import new_highs, resolve_bounds, solve_dense

__all__ = ["CellLP", "compose_cell"]

_INF = np.inf


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
        st = solve_dense(h, cost, A, rlo, rhi, np.append(lb, t_lo), np.append(ub, t_hi),
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
        st2 = resolve_bounds(h, rlo, rhi + loos, np.append(lb - box_loos, t_lo),
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
