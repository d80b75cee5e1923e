"""Several networks side by side as one network (multi-network VNN-LIB 2.0 queries).

The composed network takes one flat vector ``u`` of free input elements; network ``g`` reads its
(flattened) input as ``u[sel_g]`` (``sel_g`` an index array: inputs a query declares equal share
an element of ``u``, other inputs get elements of their own), and the composed output is the
concatenation of every network's flattened output, optionally followed by ``u`` itself (the
*passthrough*, so that constraints over inputs become rows over outputs).

* :func:`side_by_side_chain` -- all parts dense chains: one dense chain (the fast path: input
  splitting and the exact LP at full phase assignments).  Parts are padded to the same depth
  (``relu(v) - relu(-v)`` carries a linear value through a ReLU layer), the first affine
  reads ``u`` through each part's selection, hidden layers are block-diagonal.  The passthrough
  is carried as ``relu(u - lb) + lb`` with ``lb`` a lower bound of ``u`` on every input box:
  those ReLUs are stably active, so they add no case split.
* :func:`side_by_side_graph` -- any parts: a :class:`~dpllnn.model.graph.Graph` with a Dense
  selection per part, the parts' nodes, and a Concat of their outputs.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph, InputOp, Node
from .ops import Concat, Dense, Reshape

__all__ = ["pad_to_depth", "side_by_side_chain", "side_by_side_graph"]


def pad_to_depth(net, depth: int):
    """The same function as the dense chain ``net`` with ``depth`` ReLU layers (identity layers
    ``relu(v) - relu(-v)``); ``net`` itself when it is that deep already."""
    from ..network import Affine, Network

    affs = list(net.affines)
    while len(affs) - 1 < depth:
        last = affs[-1]
        affs[-1] = Affine(np.vstack([last.W, -last.W]), np.concatenate([last.b, -last.b]))
        m = last.n_out
        affs.append(Affine(np.hstack([np.eye(m), -np.eye(m)]), np.zeros(m)))
    return Network(affs, input_shape=tuple(net.input_shape), output_shape=tuple(net.output_shape))


def _block_diag(mats):
    rows = sum(m.shape[0] for m in mats)
    cols = sum(m.shape[1] for m in mats)
    out = np.zeros((rows, cols))
    r = c = 0
    for m in mats:
        out[r:r + m.shape[0], c:c + m.shape[1]] = m
        r, c = r + m.shape[0], c + m.shape[1]
    return out


def _check_sels(parts, sels, n_u):
    if len(parts) != len(sels) or not parts:
        raise ValueError("side_by_side: one selection per part, at least one part")
    for net, sel in zip(parts, sels):
        sel = np.asarray(sel)
        if sel.shape != (net.n_inputs,) or (sel.size and not 0 <= sel.min() <= sel.max() < n_u):
            raise ValueError(f"side_by_side: selection of shape {sel.shape} does not map "
                             f"{n_u} free inputs onto {net.n_inputs} network inputs")


def side_by_side_chain(parts, sels, n_u: int, passthrough_lb=None):
    """Dense chains side by side as one dense chain.

    Parameters
    ----------
    parts : list of dpllnn.network.Network
    sels : list of int ndarray, shape (parts[g].n_inputs,) -- part ``g`` reads ``u[sels[g]]``
    n_u : int -- number of free inputs
    passthrough_lb : float64 ndarray (n_u,), optional -- when given, ``u`` is appended to the
        output; it must be a lower bound of ``u`` wherever the network is evaluated (the box)

    Returns
    -------
    Network -- ``n_inputs = n_u``, ``n_outputs = sum(parts' n_outputs) (+ n_u)``
    """
    from ..network import Affine, Network

    _check_sels(parts, sels, n_u)
    depth = max(p.n_hidden_layers for p in parts)
    padded = [pad_to_depth(p, depth) for p in parts]
    firsts, biases = [], []
    for p, sel in zip(padded, sels):
        W0 = p.affines[0].W
        W = np.zeros((W0.shape[0], n_u))
        np.add.at(W.T, np.asarray(sel, dtype=np.int64), W0.T)    # W[:, sel[k]] += W0[:, k]
        firsts.append(W)
        biases.append(p.affines[0].b)
    carry = passthrough_lb is not None
    if carry:
        lb = np.asarray(passthrough_lb, dtype=np.float64).reshape(n_u)
        if not np.all(np.isfinite(lb)):
            raise ValueError("side_by_side_chain: the passthrough lower bound must be finite")
        firsts.append(np.eye(n_u))
        biases.append(-lb if depth > 0 else np.zeros(n_u))
    affs = [Affine(np.vstack(firsts), np.concatenate(biases))]
    for k in range(1, depth + 1):
        mats = [p.affines[k].W for p in padded] + ([np.eye(n_u)] if carry else [])
        bs = [p.affines[k].b for p in padded]
        if carry:
            bs.append(lb if k == depth else np.zeros(n_u))
        affs.append(Affine(_block_diag(mats), np.concatenate(bs)))
    n_out = affs[-1].n_out
    return Network(affs, input_shape=(n_u,), output_shape=(n_out,))


def side_by_side_graph(parts, sels, n_u: int, passthrough: bool = False) -> Graph:
    """Networks (dense chains or graphs) side by side as one :class:`Graph`.

    Parameters as :func:`side_by_side_chain`; ``passthrough`` appends ``u`` to the output.

    Returns
    -------
    Graph -- input shape ``(n_u,)``, output shape ``(n_out,)``, the concatenation of the parts'
    flattened outputs (and ``u``); same functions as the parts (float64).
    """
    from .lower import graph_from_network

    _check_sels(parts, sels, n_u)
    nodes = [Node(InputOp((n_u,)), (), "u")]
    outs = []
    for g, (part, sel) in enumerate(zip(parts, sels)):
        graph = part if getattr(part, "is_graph", False) else graph_from_network(part)
        sel = np.asarray(sel, dtype=np.int64)
        in_shape = graph.nodes[0].shape
        feed = 0
        if not (sel.size == n_u and np.array_equal(sel, np.arange(n_u))):
            S = np.zeros((sel.size, n_u))
            S[np.arange(sel.size), sel] = 1.0
            nodes.append(Node(Dense(S, np.zeros(sel.size), (n_u,)), (0,), f"select_{g}"))
            feed = len(nodes) - 1
        if nodes[feed].shape != tuple(in_shape):
            nodes.append(Node(Reshape(nodes[feed].shape, in_shape), (feed,), f"reshape_in_{g}"))
            feed = len(nodes) - 1
        index = {0: feed}
        for k, nd in enumerate(graph.nodes[1:], 1):
            nodes.append(Node(nd.op, tuple(index[i] for i in nd.inputs), f"{g}:{nd.name}"))
            index[k] = len(nodes) - 1
        out = index[graph.output]
        size = graph.nodes[graph.output].size
        if nodes[out].shape != (size,):
            nodes.append(Node(Reshape(nodes[out].shape, (size,)), (out,), f"flatten_out_{g}"))
            out = len(nodes) - 1
        outs.append(out)
    if passthrough:
        outs.append(0)
    if len(outs) > 1:
        nodes.append(Node(Concat(tuple(nodes[i].shape for i in outs), 0), tuple(outs), "concat"))
    n_out = nodes[-1].size if len(outs) > 1 else nodes[outs[0]].size
    output = len(nodes) - 1 if len(outs) > 1 else outs[0]
    return Graph(nodes, output, input_shape=(n_u,), output_shape=(n_out,))
