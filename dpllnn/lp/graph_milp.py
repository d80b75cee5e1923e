"""The exact big-M MILP of a graph network on an input box (HiGHS), to refute a disjunct.

Where the relaxations of the bound engine are loose but the network is shallow, the MILP decides
a disjunct outright: on verivital's ``Convnet_avgpool`` (one ReLU layer, 5,299 unstable
neurons at eps 0.04) the triangle LP leaves ``-0.486`` on the worst disjunct, and with it a
branch-and-bound over ReLU phases that opens 800 nodes a minute without moving the bound,
while HiGHS's MILP (presolve, probing and cuts on the same encoding) proves the disjunct at its
root in about 4 s.  A dense chain goes through :func:`dpllnn.model.lower.graph_from_network`.

Encoding (Tjeng, Xiao & Tedrake, ICLR 2019).  Columns: the inputs ``x``, one block per node
(a linear node's values; a ReLU node's outputs ``a``), one binary ``delta`` per unstable ReLU.
Rows: ``v - sum_i M_i u_i = b_v`` per linear node (``M_i`` from ``op.to_csr``); per ReLU on
pre-activation ``z`` with sound bounds ``[L, U]``: stably active ``a = z``; stably inactive
``a = 0``; unstable ``a >= z``, ``a <= z - L (1 - delta)``, ``a <= U delta``, ``a in [0, U]``;
and the disjunct's rows ``C y <= d``.  Every real point of the box has a feasible completion
(``delta`` = its phase), so an infeasible MILP proves the disjunct empty.

Soundness.  ``"infeasible"`` is only reported when HiGHS finds the MILP infeasible with every
row, the box and the big-M bounds *loosened* by ``rtol * (1 + scale)`` (``rtol`` 1e-6, the
scale a magnitude bound of the row's terms) and HiGHS's primal, dual and integrality
tolerances tightened to 1e-9, three orders below the loosening: tolerances can only make
HiGHS more permissive (a point within them counts as feasible), so they never turn a feasible
disjunct infeasible.  ``"feasible"`` gives the input part of the point found: only a
candidate, which the caller replays in float64 and onnxruntime before claiming ``sat``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..model.graph import Relu
from .graph_lp import linear_node_rows
from .highs import new_highs

__all__ = ["GraphMILP", "milp_size"]

_INF = np.inf


def milp_size(graph, L, U) -> tuple[int, int]:
    """``(columns, binaries)`` of the :class:`GraphMILP` of ``graph`` with pre-activation
    bounds ``L, U`` (ndarray (n_relus,)): to decide whether building it can pay."""
    L, U = np.asarray(L).reshape(-1), np.asarray(U).reshape(-1)
    cols = graph.n_inputs + sum(nd.size for nd in graph.nodes[1:])
    nb = int(np.count_nonzero((L < 0.0) & (U > 0.0)))
    return cols + nb, nb


class GraphMILP:
    """Big-M MILP of ``graph`` over the box ``[lb, ub]`` with the disjunct rows ``C y <= d``.

    Parameters
    ----------
    graph : dpllnn.model.graph.Graph
    lb, ub : ndarray (n_inputs,), float64 -- the input box
    L, U : ndarray (n_relus,), float64 -- sound pre-activation bounds of every ReLU on the box,
        in ReLU-number order (``LayerBounds.lb`` / ``.ub``)
    C, d : ndarray (m, n_outputs), (m,) -- one disjunct: the unsafe set ``C y <= d``
    rtol : float -- relative loosening of every row and bound (see the module docstring)

    Raises
    ------
    ValueError -- shapes that do not match the graph, or ``L > U`` somewhere
    """

    def __init__(self, graph, lb, ub, L, U, C, d, rtol: float = 1e-6):
        import highspy

        self.n_in = n_in = graph.n_inputs
        lb = np.asarray(lb, dtype=np.float64).reshape(-1)
        ub = np.asarray(ub, dtype=np.float64).reshape(-1)
        L = np.asarray(L, dtype=np.float64).reshape(-1)
        U = np.asarray(U, dtype=np.float64).reshape(-1)
        C = np.atleast_2d(np.asarray(C, dtype=np.float64))
        d = np.asarray(d, dtype=np.float64).reshape(-1)
        if lb.shape != (n_in,) or ub.shape != (n_in,):
            raise ValueError(f"GraphMILP: box of shape {lb.shape}, the graph has {n_in} inputs")
        if L.shape != (graph.n_relus,) or U.shape != L.shape:
            raise ValueError(f"GraphMILP: bounds of shape {L.shape}, the graph has "
                             f"{graph.n_relus} ReLUs")
        if np.any(L > U):
            raise ValueError("GraphMILP: a pre-activation lower bound is above its upper bound")
        if C.shape[1] != graph.nodes[graph.output].size or d.shape != (C.shape[0],):
            raise ValueError(f"GraphMILP: rows of shape {C.shape}, {d.shape} do not match the "
                             f"{graph.nodes[graph.output].size} outputs")
        self.lb, self.ub = lb, ub
        # columns: x, then one block per node, then the binaries
        cols = [np.arange(n_in)]
        col = n_in
        for nd in graph.nodes[1:]:
            cols.append(np.arange(col, col + nd.size))
            col += nd.size
        n_cont = col
        clo = np.full(n_cont, -_INF)
        chi = np.full(n_cont, _INF)
        box_l = rtol * (1.0 + np.maximum(np.abs(lb), np.abs(ub)))
        clo[:n_in], chi[:n_in] = lb - box_l, ub + box_l
        mag = [np.maximum(np.abs(lb), np.abs(ub))]     # |value| bounds per node (row scales)
        rlo, rhi = [], []                              # row bounds, per block of rows
        ri, ci, vi = [], [], []
        row = 0
        bcol = n_cont                                  # next binary column
        off = 0                                        # ReLU-number offset
        for v, nd in enumerate(graph.nodes[1:], 1):
            s = nd.size
            if isinstance(nd.op, Relu):
                zc, ac = cols[nd.inputs[0]], cols[v]
                l_, u_ = L[off:off + s], U[off:off + s]
                off += s
                zm = np.maximum(np.abs(l_), np.abs(u_))
                loos = rtol * (1.0 + zm)
                lo_, hi_ = l_ - loos, u_ + loos        # loosened big-M bounds, still sound
                # the pre-activation's own columns get the bounds too (they help presolve);
                # where several ReLUs read one node, the widest bounds, so each stays sound
                clo[zc] = np.minimum(np.where(np.isfinite(clo[zc]), clo[zc], lo_), lo_)
                chi[zc] = np.maximum(np.where(np.isfinite(chi[zc]), chi[zc], hi_), hi_)
                act, ina = l_ >= 0.0, u_ <= 0.0
                uns = ~act & ~ina
                clo[ac] = np.where(act, lo_, 0.0)
                chi[ac] = np.where(ina, 0.0, hi_)
                mag.append(np.maximum(hi_, 0.0))
                # a - z >= 0 (unstable) or = 0 (active)
                ia = np.flatnonzero(act | uns)
                k = ia.size
                ri += [np.arange(k) + row] * 2
                ci += [ac[ia], zc[ia]]
                vi += [np.ones(k), -np.ones(k)]
                rlo.append(-2.0 * loos[ia])
                rhi.append(np.where(act[ia], 2.0 * loos[ia], _INF))
                row += k
                iu = np.flatnonzero(uns)
                k = iu.size
                dc = np.arange(bcol, bcol + k)
                bcol += k
                # a - z - L' delta <= -L'
                ri += [np.arange(k) + row] * 3
                ci += [ac[iu], zc[iu], dc]
                vi += [np.ones(k), -np.ones(k), -lo_[iu]]
                rlo.append(np.full(k, -_INF))
                rhi.append(-lo_[iu] + 4.0 * loos[iu])
                row += k
                # a - U' delta <= 0
                ri += [np.arange(k) + row] * 2
                ci += [ac[iu], dc]
                vi += [np.ones(k), -hi_[iu]]
                rlo.append(np.full(k, -_INF))
                rhi.append(2.0 * loos[iu])
                row += k
                continue
            r_, c_, v_, bias, terms = linear_node_rows(nd, cols, v, row, mag)
            ri += r_
            ci += c_
            vi += v_
            mag.append(np.abs(bias) + terms)
            # the value's own magnitude is at most the terms': twice the terms' scale
            loos = 2.0 * rtol * (1.0 + np.abs(bias) + terms)
            rlo.append(bias - loos)
            rhi.append(bias + loos)
            row += s
        if off != graph.n_relus:
            raise ValueError("GraphMILP: ReLU numbering does not cover the graph")
        # the disjunct, loosened: C y - t <= d + loos with t <= 0.  The objective min t guides
        # HiGHS's cuts and branching toward the disjunct (measured on Convnet_avgpool: 4-10x
        # faster than the same rows with a zero objective); infeasible still means no point
        m = C.shape[0]
        r, c = np.nonzero(C)
        yc = cols[graph.output]
        tcol = bcol
        ri += [r + row, np.arange(m) + row]
        ci += [yc[c], np.full(m, tcol)]
        vi += [C[r, c], -np.ones(m)]
        rlo.append(np.full(m, -_INF))
        rhi.append(d + rtol * (1.0 + np.abs(d) + np.abs(C) @ mag[graph.output]))
        row += m
        self.n_binaries = bcol - n_cont
        ncol = bcol + 1
        A = sp.csr_matrix((np.concatenate(vi), (np.concatenate(ri), np.concatenate(ci))),
                          shape=(row, ncol))
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = ncol, row
        cost = np.zeros(ncol)
        cost[tcol] = 1.0
        lp.col_cost_ = cost
        lp.col_lower_ = np.concatenate([clo, np.zeros(self.n_binaries), [-_INF]])
        lp.col_upper_ = np.concatenate([chi, np.ones(self.n_binaries), [0.0]])
        lp.row_lower_ = np.concatenate(rlo)
        lp.row_upper_ = np.concatenate(rhi)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = ncol, row
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data
        if self.n_binaries:
            V = highspy.HighsVarType
            lp.integrality_ = ([V.kContinuous] * n_cont + [V.kInteger] * self.n_binaries
                               + [V.kContinuous])
        h = new_highs()
        for opt in ("mip_feasibility_tolerance", "primal_feasibility_tolerance",
                    "dual_feasibility_tolerance"):
            h.setOptionValue(opt, 1e-9)
        # any point of the disjunct answers the query: stop at the first one (min t would
        # otherwise go on to the optimum: 6 s instead of milliseconds on a tiny ResNet)
        h.setOptionValue("mip_max_improving_sols", 1)
        h.passModel(lp)
        self.h = h
        self.n_cols, self.n_rows = ncol, row

    def refute(self, time_limit_s: float):
        """Solve the feasibility MILP for at most ``time_limit_s`` seconds.

        Returns
        -------
        status : {"infeasible", "feasible", "unknown"} -- ``"infeasible"``: the disjunct is empty
            on the box (sound, module docstring); ``"unknown"``: time limit or a HiGHS failure
        x : ndarray (n_inputs,) or None -- with ``"feasible"``, the input part of the point
            found, clipped to the box (a candidate counterexample, to be replayed)
        """
        import highspy

        h = self.h
        h.setOptionValue("time_limit", max(float(time_limit_s), 1e-3))
        h.run()
        st = h.getModelStatus()
        M = highspy.HighsModelStatus
        if st == M.kInfeasible:
            return "infeasible", None
        if h.getInfo().primal_solution_status == 2:
            x = np.asarray(h.getSolution().col_value, dtype=np.float64)[:self.n_in]
            return "feasible", np.clip(x, self.lb, self.ub)
        return "unknown", None
