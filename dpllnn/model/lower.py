"""Conversions between the two network models.

:func:`graph_from_network` writes a dense chain as a graph (Dense and Relu nodes): the
differential tests run the graph engine against the packed dense kernels on it.
"""
from __future__ import annotations

from .graph import Graph, InputOp, Node, Relu
from .ops import Dense

__all__ = ["graph_from_network", "network_from_graph"]


def graph_from_network(network) -> Graph:
    """The :class:`Graph` of a :class:`dpllnn.network.Network` (same function, same ReLU
    numbering: ReLU node ``k`` is hidden layer ``k``).  Input shape ``(n_inputs,)``."""
    nodes = [Node(InputOp((network.n_inputs,)), (), "input")]
    for k, aff in enumerate(network.affines):
        nodes.append(Node(Dense(aff.W, aff.b, (aff.n_in,)), (len(nodes) - 1,), f"affine_{k}"))
        if k < len(network.affines) - 1:
            nodes.append(Node(Relu((aff.n_out,)), (len(nodes) - 1,), f"relu_{k}"))
    return Graph(nodes, len(nodes) - 1, input_shape=(network.n_inputs,),
                 output_shape=(network.n_outputs,), source=network.source,
                 input_name=network.input_name, output_name=network.output_name)


def network_from_graph(graph):
    """The :class:`dpllnn.network.Network` of a chain graph (every node after the input has
    exactly one input, the previous node; ReLU nodes separate runs of linear ops).

    Each run of linear ops is composed into one dense :class:`~dpllnn.network.Affine` from the
    ops' :meth:`to_csr` matrices (``W = M_k ... M_1``, ``b = M_k(... (M_2 b_1 + b_2) ...) + b_k``);
    an empty run (a ReLU right after the input or after another ReLU) becomes the identity.  Same
    function and same ReLU numbering as the graph.

    Raises
    ------
    ValueError -- the graph is not a chain, or its output is not the last node
    """
    import numpy as np

    from ..network import Affine, Network

    nodes = graph.nodes
    if graph.output != len(nodes) - 1:
        raise ValueError("network_from_graph: the output must be the last node")
    for k, nd in enumerate(nodes[1:], 1):
        if tuple(nd.inputs) != (k - 1,):
            raise ValueError(f"network_from_graph: node {k} ({nd.name}) has inputs {nd.inputs}: "
                             "not a chain")
    if isinstance(nodes[-1].op, Relu):
        raise ValueError("network_from_graph: the output node is a ReLU")
    affines = []
    n = nodes[0].size
    W, b = np.eye(n), np.zeros(n)
    for nd in nodes[1:]:
        if isinstance(nd.op, Relu):
            affines.append(Affine(W, b))
            n = nd.size
            W, b = np.eye(n), np.zeros(n)
            continue
        mats, bias = nd.op.to_csr()
        M = mats[0]
        W = np.asarray(M @ W)
        b = np.asarray(M @ b).reshape(-1) + bias
    affines.append(Affine(W, b))
    return Network(affines, input_shape=tuple(graph.input_shape),
                   output_shape=tuple(graph.output_shape), source=graph.source,
                   input_name=graph.input_name, output_name=graph.output_name)
