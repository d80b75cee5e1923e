"""Big-M MILP encoding of a ReLU network on a box (HiGHS), for sign and equivalence queries.

The model encodes hidden layers ``0 .. upto-1`` of a :class:`~dpllnn.network.Network` over the input
box with pre-activation bounds that must be *sound* (from :mod:`dpllnn.bounds`):

- a neuron with ``ub <= 0`` is the constant 0 (no column);
- a neuron with ``lb >= 0`` is a column ``a`` with the equality ``a = W a_prev + b``;
- any other neuron gets ``a in [0, ub]``, a binary ``delta`` and the rows
  ``a >= z``, ``a <= z - lb (1 - delta)``, ``a <= ub delta``.

*Query rows* ``q = Wq @ a_{upto-1} + bq`` (e.g. the next layer's candidate neurons, or the outputs
of a product network) are added once with free bounds; :meth:`ReluMILP.feasible` sets one of them
to ``lo <= q <= hi`` and solves a pure feasibility MILP, so HiGHS stops at the first point found.

Soundness.  ``"infeasible"`` is used to *prove* a sign or an equivalence; HiGHS only declares
infeasibility when no point satisfies the constraints within its (tightened, 1e-9) tolerances, so
tolerances make it more permissive, not less.  Callers query with a safety margin (e.g.
``z >= -tol`` rather than ``z >= 0``).  A ``"feasible"`` point is only a candidate: callers replay
it in float64 before claiming anything from it.
"""
from __future__ import annotations

import numpy as np

from .highs import new_highs
from ..network import Network

__all__ = ["ReluMILP"]

_INF = np.inf


class ReluMILP:
    """MILP of ``network``'s first ``upto`` hidden layers plus query rows.

    Parameters
    ----------
    network : Network
    lb, ub : ndarray (n_inputs,) -- the input box
    z_lb, z_ub : list of ndarray -- sound pre-activation bounds of hidden layers ``0..upto-1``
    upto : int -- number of hidden layers encoded (0: queries are affine in ``x``)
    Wq : ndarray (m, width of layer upto-1, or n_inputs when upto = 0); bq : ndarray (m,)
    threads : int or None -- HiGHS's ``threads`` option (None: leave it).  HiGHS has one thread
        scheduler per process: once another instance started it with other settings (the CDCL
        search's LPs), setting ``threads`` makes every ``run`` end in an error, so callers that
        share a process with other HiGHS models pass None
    """

    def __init__(self, network: Network, lb, ub, z_lb, z_ub, upto: int, Wq, bq,
                 threads: int | None = 1):
        import highspy

        self.n_in = network.n_inputs
        cols_lo = list(np.asarray(lb, dtype=np.float64))
        cols_hi = list(np.asarray(ub, dtype=np.float64))
        integ = [0] * self.n_in
        rows: list[tuple[list[int], list[float], float, float]] = []
        prev = list(range(self.n_in))          # column of each previous activation (None = 0)
        self.n_binaries = 0

        def affine_terms(w):
            idx, val = [], []
            for p, c in enumerate(prev):
                if c is not None and w[p] != 0.0:
                    idx.append(c)
                    val.append(float(w[p]))
            return idx, val

        for k in range(upto):
            aff = network.affines[k]
            cur = []
            lo_k, hi_k = np.asarray(z_lb[k]), np.asarray(z_ub[k])
            for j in range(aff.n_out):
                l, u, bj = float(lo_k[j]), float(hi_k[j]), float(aff.b[j])
                if u <= 0.0:
                    cur.append(None)
                    continue
                idx, val = affine_terms(aff.W[j])
                a = len(cols_lo)
                cur.append(a)
                if l >= 0.0:
                    cols_lo.append(l)
                    cols_hi.append(u)
                    integ.append(0)
                    rows.append(([a] + idx, [1.0] + [-v for v in val], bj, bj))
                    continue
                cols_lo += [0.0, 0.0]
                cols_hi += [u, 1.0]
                integ += [0, 1]
                dl = a + 1
                self.n_binaries += 1
                rows.append(([a] + idx, [1.0] + [-v for v in val], bj, _INF))
                rows.append(([a] + idx + [dl], [1.0] + [-v for v in val] + [-l], -_INF, bj - l))
                rows.append(([a, dl], [1.0, -u], -_INF, 0.0))
            prev = cur
        Wq = np.atleast_2d(np.asarray(Wq, dtype=np.float64))
        self.bq = np.asarray(bq, dtype=np.float64).reshape(-1)
        self.q0 = len(rows)
        for i in range(Wq.shape[0]):
            idx, val = affine_terms(Wq[i])
            rows.append((idx, val, -_INF, _INF))
        self.n_queries = Wq.shape[0]

        nc = len(cols_lo)
        lp = highspy.HighsLp()
        lp.num_col_ = nc
        lp.num_row_ = len(rows)
        lp.col_cost_ = np.zeros(nc)
        lp.col_lower_ = np.asarray(cols_lo, dtype=np.float64)
        lp.col_upper_ = np.asarray(cols_hi, dtype=np.float64)
        lp.row_lower_ = np.array([r[2] for r in rows], dtype=np.float64)
        lp.row_upper_ = np.array([r[3] for r in rows], dtype=np.float64)
        starts = np.concatenate([[0], np.cumsum([len(r[0]) for r in rows])]).astype(np.int32)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_ = nc
        lp.a_matrix_.num_row_ = len(rows)
        lp.a_matrix_.start_ = starts
        lp.a_matrix_.index_ = np.array([i for r in rows for i in r[0]], dtype=np.int32)
        lp.a_matrix_.value_ = np.array([v for r in rows for v in r[1]], dtype=np.float64)
        if self.n_binaries:
            lp.integrality_ = [highspy.HighsVarType.kInteger if t else highspy.HighsVarType.kContinuous
                               for t in integ]
        h = new_highs()
        if threads is not None:
            h.setOptionValue("threads", int(threads))
        h.setOptionValue("mip_feasibility_tolerance", 1e-9)
        h.setOptionValue("primal_feasibility_tolerance", 1e-9)
        h.setOptionValue("dual_feasibility_tolerance", 1e-9)
        h.passModel(lp)
        self.h = h

    def feasible(self, i: int, lo: float = -_INF, hi: float = _INF, time_limit_s: float = 10.0):
        """Is there an input with ``lo <= q_i(x) <= hi``?

        Returns
        -------
        status : {"infeasible", "feasible", "unknown"}
        x : ndarray (n_inputs,) or None -- the point found (a candidate, to be replayed)
        """
        import highspy

        h = self.h
        r = self.q0 + int(i)
        h.changeRowBounds(r, float(lo - self.bq[i]), float(hi - self.bq[i]))
        h.setOptionValue("time_limit", max(float(time_limit_s), 1e-3))
        try:
            h.run()
            st = h.getModelStatus()
            M = highspy.HighsModelStatus
            if st == M.kInfeasible:
                return "infeasible", None
            if st == M.kOptimal or (st == M.kTimeLimit and h.getInfo().primal_solution_status == 2):
                x = np.asarray(h.getSolution().col_value, dtype=np.float64)[: self.n_in]
                return "feasible", x
            return "unknown", None
        finally:
            h.changeRowBounds(r, -_INF, _INF)
            h.clearSolver()
