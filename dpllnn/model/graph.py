"""The graph network: a DAG of linear ops and ReLUs in topological order, float64, batched.

Node 0 is the input; every other node is a :class:`~dpllnn.model.ops.LinearOp` or a
:class:`Relu` over earlier nodes, so the node list is a topological order.  Tensor shapes are the
full ONNX shapes (a leading batch dimension of 1 included) and every method takes a leading
*batch* axis of points or rows on top of them.

ReLU numbering (DESIGN.md §7): ReLU nodes in topological order, neurons in C order inside each;
the flat hidden index ``j`` of neuron ``i`` of ReLU node ``k`` is ``layer_offsets[k] + i``.  So
the *z space* of the bound engine is [pre-activations of ReLU node 0 | node 1 | ... | outputs]
exactly as for a dense chain, and phases, ``LayerBounds`` and SAT variables keep their meaning
(with "layer" read as "ReLU node").  A ReLU node's pre-activations depend only on the phases of
its *ancestor* ReLU nodes, all of which come earlier in the order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Relu", "Node", "Graph", "InputOp"]


@dataclass(frozen=True)
class Relu:
    """Element-wise ``max(z, 0)`` over a tensor of ``shape``."""

    shape: tuple

    @property
    def in_shapes(self):
        return (self.shape,)

    @property
    def out_shape(self):
        return self.shape


@dataclass(frozen=True)
class Node:
    """One graph node: ``op`` applied to the outputs of the nodes ``inputs`` (None for node 0).

    name : str -- the ONNX node (or tensor) it comes from, for messages and ``dpllnn info``.
    """

    op: object
    inputs: tuple
    name: str = ""

    @property
    def shape(self) -> tuple:
        return tuple(self.op.out_shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Graph:
    """A feed-forward ReLU network as a DAG (see module docstring).

    Attributes
    ----------
    nodes : list of Node
        ``nodes[0]`` is the input (``op`` is an :class:`InputOp`); topological order.
    output : int
        Index of the output node.
    input_shape, output_shape : tuple of int
        ONNX shapes without a leading batch dimension of 1 (as :class:`dpllnn.network.Network`).
    source, input_name, output_name, meta : as for :class:`dpllnn.network.Network`.
    """

    nodes: list
    output: int
    input_shape: tuple = ()
    output_shape: tuple = ()
    source: str | None = None
    input_name: str | None = None
    output_name: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.nodes or not isinstance(self.nodes[0].op, InputOp):
            raise ValueError("Graph: node 0 must be the input")
        for k, nd in enumerate(self.nodes[1:], 1):
            if not nd.inputs or any(not 0 <= i < k for i in nd.inputs):
                raise ValueError(f"Graph: node {k} ({nd.name}) has inputs {nd.inputs} that are "
                                 "not earlier nodes")
            want = tuple(tuple(s) for s in nd.op.in_shapes)
            got = tuple(self.nodes[i].shape for i in nd.inputs)
            if want != got:
                raise ValueError(f"Graph: node {k} ({nd.name}) expects inputs {want}, got {got}")
        if not 0 < self.output < len(self.nodes):
            raise ValueError("Graph: the output must be a node after the input")
        self.relu_nodes = [k for k, nd in enumerate(self.nodes) if isinstance(nd.op, Relu)]
        sizes = [self.nodes[k].size for k in self.relu_nodes]
        self.layer_offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(
            np.int64)
        consumers = [[] for _ in self.nodes]
        for k, nd in enumerate(self.nodes[1:], 1):
            for i in nd.inputs:
                consumers[i].append(k)
        self.consumers = consumers
        if not self.input_shape:
            self.input_shape = self.nodes[0].shape
        if not self.output_shape:
            self.output_shape = self.nodes[self.output].shape

    # ---- shapes -------------------------------------------------------------------------
    @property
    def n_inputs(self) -> int:
        return self.nodes[0].size

    @property
    def n_outputs(self) -> int:
        return self.nodes[self.output].size

    @property
    def n_relus(self) -> int:
        return int(self.layer_offsets[-1])

    @property
    def n_hidden_layers(self) -> int:
        """Number of ReLU nodes."""
        return len(self.relu_nodes)

    @property
    def hidden_sizes(self) -> list[int]:
        return [self.nodes[k].size for k in self.relu_nodes]

    @property
    def n_params(self) -> int:
        return int(sum(getattr(nd.op, "n_params", 0) for nd in self.nodes))

    @property
    def is_graph(self) -> bool:
        return True

    def relu_input(self, r: int) -> int:
        """Node index of the pre-activation tensor of ReLU node ``r`` (in ReLU order)."""
        return self.nodes[self.relu_nodes[r]].inputs[0]

    def ancestors(self, k: int) -> set[int]:
        """Indices of all nodes ``k`` depends on (``k`` excluded)."""
        out, stack = set(), list(self.nodes[k].inputs) if k > 0 else []
        while stack:
            i = stack.pop()
            if i not in out:
                out.add(i)
                stack.extend(self.nodes[i].inputs if i > 0 else ())
        return out

    # ---- semantics ----------------------------------------------------------------------
    def _run(self, x, keep_pre=False):
        X = np.asarray(x, dtype=np.float64)
        single = X.ndim == 1
        X = np.atleast_2d(X)
        if X.shape[1] != self.n_inputs:
            raise ValueError(f"forward: expected {self.n_inputs} inputs, got {X.shape[1]}")
        B = X.shape[0]
        vals = [None] * len(self.nodes)
        vals[0] = X.reshape((B,) + self.nodes[0].shape)
        pres = []
        for k, nd in enumerate(self.nodes[1:], 1):
            ins = [vals[i] for i in nd.inputs]
            if isinstance(nd.op, Relu):
                if keep_pre:
                    pres.append(_flat(ins[0], B))
                vals[k] = np.maximum(ins[0], 0.0)
            else:
                vals[k] = nd.op.forward(*ins)
            for i in nd.inputs:      # free a tensor after its last consumer
                if self.consumers[i][-1] == k and i != self.output:
                    vals[i] = None
        y = _flat(vals[self.output], B)
        return (y[0] if single else y), pres

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Exact float64 forward pass.

        Parameters
        ----------
        x : ndarray, shape (n_inputs,) or (batch, n_inputs) (C-order flattened input)

        Returns
        -------
        ndarray, float64, shape (n_outputs,) or (batch, n_outputs)
        """
        return self._run(x)[0]

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Pre-activations of every ReLU node, ``(batch, size)`` each, for inputs (batch, n_in)."""
        return self._run(np.atleast_2d(x), keep_pre=True)[1]

    def forward_masks(self, X: np.ndarray):
        """Forward pass keeping the ReLU masks: X (B, n_in) -> (Y (B, n_out), masks list)."""
        B = X.shape[0]
        vals = [None] * len(self.nodes)
        vals[0] = np.asarray(X, dtype=np.float64).reshape((B,) + self.nodes[0].shape)
        masks = []
        for k, nd in enumerate(self.nodes[1:], 1):
            ins = [vals[i] for i in nd.inputs]
            if isinstance(nd.op, Relu):
                m = ins[0] > 0.0
                masks.append(m)
                vals[k] = np.where(m, ins[0], 0.0)
            else:
                vals[k] = nd.op.forward(*ins)
        return _flat(vals[self.output], B), masks

    def backward(self, masks, G: np.ndarray, leak: float = 0.0) -> np.ndarray:
        """Reverse-mode pass: output cotangents G (B, n_out) -> input gradient (B, n_in).

        ``masks`` from :meth:`forward_masks`; ``leak > 0`` gives inactive neurons that slope
        (a leaky-ReLU surrogate).  Cotangents are summed where branches meet."""
        B = G.shape[0]
        cot = [None] * len(self.nodes)
        cot[self.output] = np.asarray(G, dtype=np.float64).reshape(
            (B,) + self.nodes[self.output].shape)
        r = len(masks)
        for k in range(len(self.nodes) - 1, 0, -1):
            nd = self.nodes[k]
            if isinstance(nd.op, Relu):
                r -= 1
            A = cot[k]
            if A is None:
                continue
            cot[k] = None
            if isinstance(nd.op, Relu):
                m = masks[r]
                parts = (A * (m if leak == 0.0 else np.where(m, 1.0, leak)),)
            else:
                parts = nd.op.transpose(A)
            for i, p in zip(nd.inputs, parts):
                cot[i] = p if cot[i] is None else cot[i] + p
        g = cot[0]
        return np.zeros((B, self.n_inputs)) if g is None else _flat(g, B)

    def summary(self) -> str:
        kinds: dict = {}
        for nd in self.nodes[1:]:
            kinds[type(nd.op).__name__] = kinds.get(type(nd.op).__name__, 0) + 1
        ops = ", ".join(f"{v} {k}" for k, v in kinds.items())
        return (f"inputs {self.n_inputs} {tuple(self.input_shape)}, outputs {self.n_outputs}, "
                f"graph of {len(self.nodes) - 1} nodes ({ops}), {len(self.relu_nodes)} ReLU "
                f"nodes, {self.n_relus} ReLUs, {self.n_params} parameters")


@dataclass(frozen=True)
class InputOp:
    """The graph input (node 0)."""

    shape: tuple

    @property
    def in_shapes(self):
        return ()

    @property
    def out_shape(self):
        return self.shape


def _flat(a: np.ndarray, B: int) -> np.ndarray:
    """``a`` (B, *shape) as (B, prod(shape)); unlike ``reshape(B, -1)`` also for B = 0."""
    return a.reshape(B, int(np.prod(a.shape[1:], dtype=np.int64)))
