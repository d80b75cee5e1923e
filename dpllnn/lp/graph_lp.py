"""The incremental cell / triangle-relaxation LP of :class:`dpllnn.lp.highs.LayeredLP` for a graph
network (Conv, residual Add, pooling, ...): every linear op gives its sparse rows (``op.to_csr``).

Variables: the inputs ``x``; per non-ReLU node its flattened values; per ReLU number ``k`` a
pre-activation block ``z_k`` (tied to the node it reads by ``z_k - u = 0``: two ReLUs may read one
node with different phases) and its output block ``a_k``; then ``t``.  Rows: ``v - sum_i M_i u_i
= b_v`` per linear node (``M_i`` the op's matrix on input ``i``), the tie rows, the ReLU rows
``R1 = a - z`` and ``R2 = a - s z`` and the objective rows ``C y - t <= d`` on the output node,
so the phase, bound and query logic (and the soundness contract: ``"infeasible"`` only when the
LP with every bound loosened by ``rtol * (1 + scale)`` is infeasible) is LayeredLP's.  The
scales of the loosening come from the root sweep's bounds on every node.

Meant for small graphs (the tiny conv nets whose searches reach complete assignments): the LP
has one column per tensor element.
"""
from __future__ import annotations

import numpy as np

from ..model.graph import Relu
from .layered import LayeredLP

__all__ = ["GraphLP", "graph_lp_columns", "linear_node_rows"]


def linear_node_rows(nd, cols, v, row, mag):
    """The rows ``v - sum_i M_i u_i = b_v`` of linear node ``v`` (``M_i`` from ``op.to_csr``),
    from row ``row`` on.

    Parameters
    ----------
    nd : Node -- node ``v``;  cols : list of ndarray -- the LP columns of every node's values
    v, row : int;  mag : list of ndarray -- a bound on ``|value|`` of every earlier node

    Returns
    -------
    (ri, ci, vi) lists of COO parts; ``b_v`` ndarray (size,); ``sum_i |M_i| mag_i`` ndarray
    (size,), the magnitude of the row's terms (its loosening scale)
    """
    mats, bias = nd.op.to_csr()
    s = nd.size
    ri, ci, vi = [np.arange(s) + row], [cols[v]], [np.ones(s)]
    terms = np.zeros(s)
    for i, M in zip(nd.inputs, mats):
        M = M.tocoo()
        ri.append(M.row.astype(np.int64) + row)
        ci.append(cols[i][M.col])
        vi.append(-M.data)
        terms = terms + abs(M) @ mag[i]
    return ri, ci, vi, np.asarray(bias, dtype=np.float64).reshape(-1), terms


def graph_lp_columns(graph) -> int:
    """Columns of the :class:`GraphLP` of ``graph`` (to decide whether building it pays)."""
    n = graph.n_inputs + 1
    for nd in graph.nodes[1:]:
        n += nd.size * (2 if isinstance(nd.op, Relu) else 1)
    return n


class GraphLP(LayeredLP):
    """:class:`LayeredLP` (same ``solve``/``set_time_limit`` contract) for a graph.

    Parameters
    ----------
    graph : dpllnn.model.graph.Graph
    C, d : ndarray (m, n_outputs), (m,) -- stacked objective rows
    lb, ub : ndarray (n_inputs,) -- the case's box
    root : LayerBounds -- sound root bounds of the graph (``sweep`` per node: the scales)
    rtol : float;  time_limit_s : float, optional
    """

    def __init__(self, graph, C, d, lb, ub, root, rtol: float = 1e-6,
                 time_limit_s: float | None = None):
        C, d = self._set_problem(graph, C, d, lb, ub, rtol)
        n_in = self.n_in
        sw = root.sweep
        mag = [np.where(np.isfinite(a), a, 0.0)
               for a in (np.maximum(np.abs(sw.lo[v]), np.abs(sw.hi[v])).reshape(-1)
                         for v in range(len(graph.nodes)))]
        mag[0] = np.maximum(np.abs(self.lb), np.abs(self.ub))
        relu_num = {v: k for k, v in enumerate(graph.relu_nodes)}
        cols, col = [np.arange(n_in)], n_in
        zcol, acol = [], []
        for v, nd in enumerate(graph.nodes[1:], 1):
            if isinstance(nd.op, Relu):
                zcol.append(np.arange(col, col + nd.size))
                acol.append(np.arange(col + nd.size, col + 2 * nd.size))
                cols.append(acol[-1])
                col += 2 * nd.size
            else:
                cols.append(np.arange(col, col + nd.size))
                col += nd.size
        self.tcol = col
        ncol = col + 1
        self.zcol = np.concatenate(zcol) if zcol else np.zeros(0, np.int64)
        self.acol = np.concatenate(acol) if acol else np.zeros(0, np.int64)
        self.ncol = ncol
        n = self.zcol.size
        self.n = n
        ri, ci, vi = [], [], []
        eq_rhs, eq_scale = [], []
        zmag = np.zeros(n)
        row = 0
        off = 0
        nk = -1
        for v, nd in enumerate(graph.nodes[1:], 1):
            if isinstance(nd.op, Relu):
                k = relu_num[v]
                p = nd.inputs[0]
                s_ = nd.size
                z = self.zcol[off:off + s_]
                ri += [np.arange(s_) + row] * 2
                ci += [z, cols[p]]
                vi += [np.ones(s_), -np.ones(s_)]
                eq_rhs.append(np.zeros(s_))
                zmag[off:off + s_] = mag[p]
                eq_scale.append(1.0 + 2.0 * mag[p])
                row += s_
                # z blocks in ReLU-number order: the z space of the bounds and phases
                assert k == nk + 1, "ReLU nodes out of topological order"
                nk = k
                off += s_
                continue
            s_ = nd.size
            r_, c_, v_, bias, terms = linear_node_rows(nd, cols, v, row, mag)
            ri += r_
            ci += c_
            vi += v_
            eq_rhs.append(bias)
            eq_scale.append(1.0 + np.abs(bias) + mag[v] + terms)
            row += s_
        self.r_eq = np.arange(0, row)
        self.eq_rhs = np.concatenate(eq_rhs) if eq_rhs else np.zeros(0)
        self.eq_loos = self.rtol * (np.concatenate(eq_scale) if eq_scale else np.zeros(0))
        self.zmag = zmag
        self.amag = np.maximum(zmag, 0.0)
        self.r1 = np.arange(row, row + n)
        ri += [self.r1, self.r1]
        ci += [self.acol, self.zcol]
        vi += [np.ones(n), -np.ones(n)]
        row += n
        self.r2 = np.arange(row, row + n)
        ri += [self.r2, self.r2]
        ci += [self.acol, self.zcol]
        vi += [np.ones(n), np.full(n, -0.5)]
        self.slope = np.full(n, 0.5)
        row += n
        m = C.shape[0]
        self.m = m
        ycols = cols[graph.output]
        r, c = np.nonzero(C)
        ri += [r + row, np.arange(m) + row]
        ci += [ycols[c], np.full(m, ncol - 1)]
        vi += [C[r, c], -np.ones(m)]
        self.r_out = np.arange(row, row + m)
        self.out_rhs = d
        self.out_loos = self.rtol * (1.0 + np.abs(d) + np.abs(C) @ mag[graph.output])
        row += m
        self.nrow = row
        free = np.ones(ncol, dtype=bool)
        free[:n_in] = False
        free[self.zcol] = free[self.acol] = False
        free[-1] = False
        self._free = np.flatnonzero(free)
        self._pass_model(np.concatenate(ri), np.concatenate(ci), np.concatenate(vi), row, ncol,
                         time_limit_s)

    def _bounds(self, phase, L, U, rows_lo, rows_hi):
        clo, chi, rlo, rhi, col_l, row_l = super()._bounds(phase, L, U, rows_lo, rows_hi)
        # the linear nodes' columns are free (LayeredLP has none and leaves them unset)
        clo[self._free], chi[self._free], col_l[self._free] = -np.inf, np.inf, 0.0
        return clo, chi, rlo, rhi, col_l, row_l
