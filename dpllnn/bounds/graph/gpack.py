"""A graph network prepared for the bound engine: the index spaces of :mod:`dpllnn.bounds.pack`
over a DAG.

*z space*: the pre-activations of ReLU node 0, ReLU node 1, ... (topological order, C order
inside each), then the outputs: ``zoff[k]:zoff[k+1]`` is ReLU node ``k`` (``k = n_layers`` the
output), so ``LayerBounds``, phases and SAT variables read "layer" as "ReLU node".

Rounding margin: every computed bound is moved outward by ``margin_factor * mag`` where ``mag``
bounds the sum of the magnitudes of every term that entered it (Higham's ``gamma_n``; see
``dpllnn/bounds/pack.py``).  ``N`` bounds the number of terms summed into one result: the
largest fan-in of any op (a conv output sums ``C_in/g * k^2`` products, its transpose
``C_out/g * k^2``), plus one term per element of every tensor for the running constant of a
backward pass (bias terms, relaxation intercepts, the concretisation over the input) and one per
branch where residual branches meet; the factor 2 covers the rounding of ``mag`` itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...model.graph import Relu
from ...model.ops import Pad, Reshape, Scale, Slice, Transpose
from ..pack import ZSpace, gamma

__all__ = ["GraphPacked", "pack_graph", "interval_exact_nodes", "after_a_relu_nodes"]


@dataclass(frozen=True, eq=False)
class GraphPacked(ZSpace):
    """Index spaces and margin of a :class:`dpllnn.model.graph.Graph`.

    Attributes
    ----------
    graph : Graph
    pre : tuple of int -- node index of each ReLU node's pre-activation tensor
    relu_index : dict -- node index of a ReLU node -> its ReLU number ``k``
    zoff : ndarray, int64, (n_layers + 2,) -- z-space offsets (module docstring)
    n_layers, n_inputs, n_outputs, n_relus, n_z : int
    margin_factor : float -- ``2 gamma_N``
    row_chunk_bytes : int -- memory budget, bytes, of one chunk of backward rows at the widest
        tensor (CROWN's sweeps and alpha's per-row slopes work through their rows in chunks
        this big, so a worker's peak memory does not grow with the number of unstable
        neurons); results do not depend on it
    interval_exact : frozenset of int -- nodes whose interval bounds are their exact range
        (:func:`interval_exact_nodes`): the CROWN pass skips them
    after_a_relu : frozenset of int -- nodes with a ReLU node among their ancestors
        (:func:`after_a_relu_nodes`): the ones hidden-layer alpha-CROWN optimises
    widest_upto : tuple of int -- ``widest_upto[v]`` is the largest node size among nodes
        ``0..v`` (the row chunk of a backward pass from ``v``; asked once per pass, and a
        search node makes dozens of passes)
    """

    graph: object
    pre: tuple
    relu_index: dict
    zoff: np.ndarray
    n_layers: int
    n_inputs: int
    n_outputs: int
    n_relus: int
    n_z: int
    margin_factor: float
    row_chunk_bytes: int
    interval_exact: frozenset
    after_a_relu: frozenset
    widest_upto: tuple

    is_graph = True

    @property
    def sizes(self) -> np.ndarray:
        """``[n_inputs, size of ReLU node 0, ..., n_outputs]`` (as ``PackedNet.sizes``)."""
        return np.array([self.n_inputs] + self.hidden_sizes + [self.n_outputs], dtype=np.int64)


def pack_graph(graph, row_chunk_bytes: int = 64 << 20) -> GraphPacked:
    """Prepare ``graph`` (a :class:`dpllnn.model.graph.Graph`) for the bound engine.

    ``row_chunk_bytes`` (int, bytes, >= 1): see :class:`GraphPacked`.

    Raises
    ------
    ValueError -- ``row_chunk_bytes < 1``
    """
    if int(row_chunk_bytes) < 1:
        raise ValueError(f"row_chunk_bytes must be at least 1, got {row_chunk_bytes}")
    pre = tuple(graph.nodes[k].inputs[0] for k in graph.relu_nodes)
    relu_index = {k: r for r, k in enumerate(graph.relu_nodes)}
    sizes = [graph.nodes[k].size for k in graph.relu_nodes] + [graph.n_outputs]
    zoff = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    total = sum(nd.size for nd in graph.nodes)
    fan = max([getattr(nd.op, "fan_in", 1) for nd in graph.nodes[1:]] + [1])
    n_merge = sum(max(0, len(c) - 1) for c in graph.consumers)
    N = 2 * (total + graph.n_inputs) + 2 * fan + 4 * (len(graph.nodes) + n_merge) + 32
    return GraphPacked(graph=graph, pre=pre, relu_index=relu_index, zoff=zoff,
                       n_layers=len(pre), n_inputs=graph.n_inputs, n_outputs=graph.n_outputs,
                       n_relus=int(zoff[len(pre)]), n_z=int(zoff[-1]),
                       margin_factor=2.0 * gamma(N), row_chunk_bytes=int(row_chunk_bytes),
                       interval_exact=interval_exact_nodes(graph),
                       after_a_relu=after_a_relu_nodes(graph),
                       widest_upto=tuple(int(w) for w in np.maximum.accumulate(
                           [nd.size for nd in graph.nodes])))


def after_a_relu_nodes(g) -> frozenset:
    """Indices of the nodes of ``g`` (a :class:`dpllnn.model.graph.Graph`) that have a ReLU
    node among their ancestors."""
    out = set()
    for v, nd in enumerate(g.nodes):
        if v and any(isinstance(g.nodes[i].op, Relu) or i in out for i in nd.inputs):
            out.add(v)
    return frozenset(out)


def interval_exact_nodes(g) -> frozenset:
    """Nodes on which interval propagation is exact: one linear op of a box.

    The input is a box; an element-wise affine map (:class:`Scale`) or a coordinate selection
    without repeats (:class:`Pad` with its constant entries, :class:`Reshape`,
    :class:`Transpose`, :class:`Slice`) of a box is again a box, and on a box the interval of
    ``W x + b`` is its exact range.  Ops with several inputs are left out (their inputs may be
    the same coordinates twice).  ``g``: a :class:`dpllnn.model.graph.Graph`; returns node
    indices.
    """
    box = {0}
    out = set()
    for v, nd in enumerate(g.nodes):
        if not v or len(nd.inputs) != 1 or nd.inputs[0] not in box or isinstance(nd.op, Relu):
            continue
        out.add(v)
        if isinstance(nd.op, (Scale, Pad, Reshape, Transpose, Slice)):
            box.add(v)
    return frozenset(out)
