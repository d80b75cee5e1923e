"""ONNX → :class:`~dpllnn.model.graph.Graph` for networks that are not chains of dense layers.

The walk is the chain importer's (:mod:`dpllnn.io.onnx_import`): nodes in topological order,
every tensor either a constant (``ndarray``, folded with numpy) or a graph tensor (:class:`_T`:
a node index and its full ONNX shape, batch dimension of 1 included).  Each operator on graph
tensors becomes one or a few graph nodes:

- Gemm / MatMul with a constant -> Dense; Conv (1-D, 2-D; strides, dilations, groups, pads,
  ``auto_pad``) -> Conv; Add / Sub / Mul / Div / Neg by constants, BatchNormalization,
  per-channel input normalisation -> Scale; Add / Sub of two graph tensors -> Sum; Pad (constant
  0) -> Pad; Flatten / Reshape / Squeeze / Unsqueeze -> Reshape; Transpose; Concat; Slice;
  Identity / Dropout / Cast -> nothing;
- AveragePool -> a depthwise Conv of ones and a Scale by the window counts (so ``pads``,
  ``count_include_pad`` and ``ceil_mode`` follow onnxruntime); GlobalAveragePool -> a depthwise
  Conv over the whole map;
- MaxPool -> exact ReLUs (:mod:`.onnx_pool`): the window elements are strided Slices of the
  padded input, reduced pairwise with ``max(a, b) = b + relu(a - b)``, so the search keeps one Boolean per ReLU.

Lowering after the walk: a Scale whose constants are per output channel folds into the Conv or
Dense before it when that node has no other consumer (BatchNormalization after Conv/Gemm).  The
input normalisation is *not* folded into a following padded conv: the zero border would change.
"""
from __future__ import annotations

import numpy as np
import onnx

from ..errors import OnnxError, UnsupportedOperator
from ..model.graph import Graph, Node, Relu
from ..model.ops import Concat, Conv, Dense, Pad, Reshape, Scale, Slice, Sum, Transpose
from . import onnx_import as chain
from .graph_build import _Builder, _NodeError, _T, _const, _conv_pads, _f64, _scale
from .onnx_pool import op_avgpool, op_maxpool

__all__ = ["graph_from_model", "GRAPH_OPS"]


def _reshape(b: _Builder, x: _T, shape) -> _T:
    shape = tuple(int(v) for v in shape)
    if shape == x.shape:
        return x
    return b.add(Reshape(x.shape, shape), x)


def _op_add(b, node, v, attrs, sign=1.0):
    x, y = v[0], v[1]
    if not _const(x) and not _const(y):
        if x.shape != y.shape:
            raise _NodeError(f"adds graph tensors of shapes {x.shape} and {y.shape}",
                             unsupported=True)
        return [b.add(Sum((1.0, sign), x.shape), x, y)]
    if _const(x):     # c + y  or  c - y
        return [_scale(b, y, sign, x)]
    return [_scale(b, x, 1.0, sign * _f64(y))]


def _op_mul(b, node, v, attrs, divide=False):
    x, y = v[0], v[1]
    if not _const(y) and (divide or not _const(x)):
        raise _NodeError("division by an input-dependent tensor" if divide else
                         "product of two input-dependent tensors is not piecewise linear",
                         unsupported=True)
    if _const(x):
        x, y = y, x
    c = _f64(y)
    return [_scale(b, x, 1.0 / c if divide else c)]


def _op_gemm(b, node, v, attrs):
    A, B = v[0], v[1]
    if _const(A) or not _const(B) or attrs.get("transA", 0) or len(A.shape) != 2:
        raise _NodeError("Gemm is supported as (graph tensor of rank 2) x constant",
                         unsupported=True)
    Bm = _f64(B)
    W = Bm if attrs.get("transB", 0) else Bm.T
    W = W * float(attrs.get("alpha", 1.0))
    n_out = W.shape[0]
    bias = np.zeros(n_out)
    rest = None
    if len(v) > 2 and v[2] is not None:
        C = _f64(v[2]) * float(attrs.get("beta", 1.0))
        if C.size == n_out or C.size == 1:
            bias = np.broadcast_to(C.reshape(-1), (n_out,)).copy()
        else:
            rest = C
    y = b.add(Dense(W, bias, A.shape), A)
    return [y if rest is None else _scale(b, y, 1.0, rest)]


def _op_matmul(b, node, v, attrs):
    x, M = v[0], v[1]
    if _const(x) or not _const(M) or np.ndim(M) != 2 or len(x.shape) < 1:
        raise _NodeError("MatMul is supported as graph tensor x 2-D constant", unsupported=True)
    M = _f64(M)
    return [b.add(Dense(M.T, np.zeros(M.shape[1]), x.shape), x)]


def _op_conv(b, node, v, attrs):
    x, W = v[0], v[1]
    if _const(x) or not _const(W):
        raise _NodeError("Conv needs a graph tensor input and constant weights",
                         unsupported=True)
    W = _f64(W)
    nsp = W.ndim - 2
    if nsp not in (1, 2):
        raise _NodeError(f"{nsp}-D convolution", unsupported=True)
    if len(x.shape) != nsp + 2:
        raise _NodeError(f"input of shape {x.shape} for a {nsp}-D convolution")
    strides = tuple(int(s) for s in attrs.get("strides", (1,) * nsp))
    dil = tuple(int(s) for s in attrs.get("dilations", (1,) * nsp))
    pads = _conv_pads(attrs, x.shape[2:], W.shape[2:], strides, dil)
    bias = _f64(v[2]) if len(v) > 2 and v[2] is not None else np.zeros(W.shape[0])
    return [b.add(Conv(W, bias, x.shape, strides, dil, pads, int(attrs.get("group", 1))), x)]


def _op_bn(b, node, v, attrs):
    if attrs.get("training_mode", 0):
        raise _NodeError("BatchNormalization in training mode", unsupported=True)
    x = v[0]
    if any(not _const(t) for t in v[1:5]):
        raise _NodeError("BatchNormalization parameters must be constant")
    scale, bias, mean, var = (_f64(t) for t in v[1:5])
    r = len(x.shape)
    if r < 2:
        raise _NodeError(f"BatchNormalization input must have rank >= 2, got {x.shape}")
    ps = (1, -1) + (1,) * (r - 2)
    s = scale / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
    return [_scale(b, x, s.reshape(ps), (bias - mean * s).reshape(ps))]


def _op_pad(b, node, v, attrs, opset):
    x = v[0]
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode != "constant":
        raise _NodeError(f"Pad mode {mode!r}", unsupported=True)
    if len(v) > 1 and v[1] is not None:
        if not _const(v[1]):
            raise _NodeError("Pad pads must be constant")
        pads = [int(p) for p in np.asarray(v[1]).reshape(-1)]
    else:
        pads = [int(p) for p in attrs.get("pads", ())]
    value = 0.0
    if len(v) > 2 and v[2] is not None and np.size(v[2]):
        value = float(np.asarray(v[2]).reshape(-1)[0])
    value = float(attrs.get("value", value))
    if len(v) > 3 and v[3] is not None:
        raise _NodeError("Pad with an axes input", unsupported=True)
    if value != 0.0:
        raise _NodeError(f"Pad with the constant {value}", unsupported=True)
    if len(pads) != 2 * len(x.shape) or min(pads) < 0:
        raise _NodeError(f"Pad pads {pads} for shape {x.shape}", unsupported=min(pads) < 0)
    if not any(pads):
        return [x]
    return [b.add(Pad(x.shape, pads), x)]


def _op_shape_like(b, node, v, attrs, opset):
    """Flatten / Reshape / Squeeze / Unsqueeze on a graph tensor: the chain importer computes the
    target shape on a stand-in constant of the same shape (zero strides, no memory)."""
    x = v[0]
    fake = np.broadcast_to(np.zeros(()), x.shape)
    out = chain._OPS[node.op_type](node, [fake] + list(v[1:]), attrs, opset)[0]
    return [_reshape(b, x, np.shape(out))]


def _op_transpose(b, node, v, attrs):
    x = v[0]
    perm = [int(p) for p in attrs.get("perm", list(range(len(x.shape)))[::-1])]
    if perm == list(range(len(x.shape))):
        return [x]
    return [b.add(Transpose(x.shape, perm), x)]


def _op_concat(b, node, v, attrs):
    if any(_const(t) for t in v):
        raise _NodeError("Concat of graph tensors with constants", unsupported=True)
    if len(v) == 1:
        return [v[0]]
    return [b.add(Concat(tuple(t.shape for t in v), int(attrs["axis"])), *v)]


def _op_slice(b, node, v, attrs):
    x = v[0]
    if len(v) > 1:
        if any(not _const(t) for t in v[1:] if t is not None):
            raise _NodeError("Slice starts/ends/axes/steps must be constant")
        get = lambda i: None if len(v) <= i or v[i] is None else \
            [int(a) for a in np.asarray(v[i]).reshape(-1)]
        starts, ends, axes, steps = get(1), get(2), get(3), get(4)
    else:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    r = len(x.shape)
    axes = list(range(len(starts))) if axes is None else [a + r if a < 0 else a for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    index = [(0, n, 1) for n in x.shape]
    for a, s0, e0, st in zip(axes, starts, ends, steps):
        if st < 1:
            raise _NodeError("Slice with a negative step", unsupported=True)
        index[a] = slice(s0, e0, st).indices(x.shape[a])
    if all(t == (0, n, 1) for t, n in zip(index, x.shape)):
        return [x]
    return [b.add(Slice(x.shape, index), x)]


def _op_cast(b, node, v, attrs):
    to = onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"]))
    if not np.issubdtype(to, np.floating):
        raise _NodeError(f"cast of an input-dependent tensor to {to}", unsupported=True)
    return [v[0]]


def _op_dropout(b, node, v, attrs):
    if len(v) > 2 and v[2] is not None and bool(np.asarray(v[2])):
        raise _NodeError("Dropout in training mode", unsupported=True)
    return [v[0], np.ones(v[0].shape, dtype=bool)]


_GRAPH = {
    "Add": lambda b, n, v, a, o: _op_add(b, n, v, a),
    "Sub": lambda b, n, v, a, o: _op_add(b, n, v, a, -1.0),
    "Mul": lambda b, n, v, a, o: _op_mul(b, n, v, a),
    "Div": lambda b, n, v, a, o: _op_mul(b, n, v, a, divide=True),
    "Neg": lambda b, n, v, a, o: [_scale(b, v[0], -1.0)],
    "Gemm": lambda b, n, v, a, o: _op_gemm(b, n, v, a),
    "MatMul": lambda b, n, v, a, o: _op_matmul(b, n, v, a),
    "Conv": lambda b, n, v, a, o: _op_conv(b, n, v, a),
    "BatchNormalization": lambda b, n, v, a, o: _op_bn(b, n, v, a),
    "AveragePool": lambda b, n, v, a, o: op_avgpool(b, n, v, a),
    "GlobalAveragePool": lambda b, n, v, a, o: op_avgpool(b, n, v, a, global_=True),
    "MaxPool": lambda b, n, v, a, o: op_maxpool(b, n, v, a),
    "Pad": _op_pad,
    "Flatten": _op_shape_like,
    "Reshape": _op_shape_like,
    "Squeeze": _op_shape_like,
    "Unsqueeze": _op_shape_like,
    "Transpose": lambda b, n, v, a, o: _op_transpose(b, n, v, a),
    "Concat": lambda b, n, v, a, o: _op_concat(b, n, v, a),
    "Slice": lambda b, n, v, a, o: _op_slice(b, n, v, a),
    "Identity": lambda b, n, v, a, o: [v[0]],
    "Cast": lambda b, n, v, a, o: _op_cast(b, n, v, a),
    "Dropout": lambda b, n, v, a, o: _op_dropout(b, n, v, a),
    "Relu": lambda b, n, v, a, o: [b.add(Relu(v[0].shape), v[0])],
    "Shape": lambda b, n, v, a, o: [np.asarray(v[0].shape, dtype=np.int64)[
        int(a.get("start", 0)):a.get("end", None)]],
}
#: Operator types the graph importer understands.
GRAPH_OPS = frozenset(_GRAPH) | chain.SUPPORTED_OPS


def _fold_scales(nodes: list, output: int) -> tuple[list, int]:
    """Fold a per-channel Scale into the Conv/Dense it follows (when that node feeds nothing
    else); returns the new node list (re-indexed) and output index."""
    n_cons = [0] * len(nodes)
    for nd in nodes[1:]:
        for i in nd.inputs:
            n_cons[i] += 1
    n_cons[output] += 1
    alias = list(range(len(nodes)))
    keep = [True] * len(nodes)
    nodes = list(nodes)
    for k, nd in enumerate(nodes):
        if k == 0 or not isinstance(nd.op, Scale):
            continue
        p = alias[nd.inputs[0]]
        prev = nodes[p].op
        if n_cons[nd.inputs[0]] != 1 or not isinstance(prev, (Conv, Dense)):
            continue
        shp = prev.out_shape
        chan = 1 if isinstance(prev, Conv) else len(shp) - 1
        want = tuple(shp[a] if a == chan else 1 for a in range(len(shp)))
        s = np.broadcast_to(nd.op.s, np.broadcast_shapes(nd.op.s.shape, (1,) * len(shp)))
        t = np.broadcast_to(nd.op.t, np.broadcast_shapes(nd.op.t.shape, (1,) * len(shp)))
        if len(s.shape) != len(shp) or len(t.shape) != len(shp) or any(
                s.shape[a] not in (1, want[a]) or t.shape[a] not in (1, want[a])
                for a in range(len(shp))):
            continue
        sv = np.broadcast_to(s, want).reshape(-1)
        tv = np.broadcast_to(t, want).reshape(-1)
        if isinstance(prev, Conv):
            W = prev.W * sv.reshape((-1,) + (1,) * (prev.W.ndim - 1))
            op = Conv(W, prev.b * sv + tv, prev.in_shape, prev.strides, prev.dilations,
                      prev.pads, prev.groups)
        else:
            op = Dense(prev.W * sv[:, None], prev.b * sv + tv, prev.in_shape)
        nodes[p] = Node(op, nodes[p].inputs, nodes[p].name)
        alias[k] = p
        keep[k] = False
    new_index, out = {}, []
    for k, nd in enumerate(nodes):
        if keep[k]:
            new_index[k] = len(out)
            out.append(Node(nd.op, tuple(new_index[alias[i]] for i in nd.inputs), nd.name))
    return out, new_index[alias[output]]


def graph_from_model(model: onnx.ModelProto, path: str) -> Graph:
    """Translate an in-memory ONNX model into a :class:`~dpllnn.model.graph.Graph`.

    Parameters
    ----------
    model : onnx.ModelProto -- one (non-initializer) float input, one output
    path : str -- file name for messages, stored as ``Graph.source``

    Returns
    -------
    Graph -- float64; ``input_shape``/``output_shape`` exclude a leading batch dimension of 1;
    ``meta`` as for :func:`dpllnn.io.onnx_import.network_from_model`.

    Raises
    ------
    UnsupportedOperator -- an operator outside :data:`GRAPH_OPS`, or one used non-linearly
    OnnxError -- a malformed model (message names the node)
    """
    path = str(path)
    g = model.graph
    consts, inp, out_name, dims, full, batched, opset = chain.model_interface(model, path)
    env: dict = dict(consts)
    b = _Builder(full, inp.name)
    env[inp.name] = _T(0, tuple(full))
    for idx, node in chain._order(g, set(env), out_name, path):
        label = chain._node_label(node, idx)
        vals = [env[x] if x else None for x in node.input]
        b.label = label
        with chain.node_errors(path, node, label):
            if node.domain not in ("", "ai.onnx") or node.op_type not in GRAPH_OPS:
                raise UnsupportedOperator(path, node.op_type, label)
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if all(_const(t) for t in vals if t is not None) and node.op_type in chain._OPS:
                outs = chain._OPS[node.op_type](node, vals, attrs, opset)
            elif node.op_type in _GRAPH:
                outs = _GRAPH[node.op_type](b, node, vals, attrs, opset)
            else:
                raise _NodeError("on an input-dependent tensor", unsupported=True)
        for name, val in zip(node.output, outs):
            if name:
                env[name] = val
    y = env[out_name]
    if _const(y) or y.node == 0:
        raise OnnxError(path, f"output '{out_name}' does not depend on the input")
    nodes, output = _fold_scales(b.nodes, y.node)
    for k, nd in enumerate(nodes[1:], 1):
        for arr in (getattr(nd.op, "W", None), getattr(nd.op, "b", None),
                    getattr(nd.op, "s", None), getattr(nd.op, "t", None)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise OnnxError(path, f"node '{nd.name}' has a NaN or infinite weight or bias")
    oshape = tuple(y.shape)
    if batched and oshape and oshape[0] == 1:
        oshape = oshape[1:]
    return Graph(nodes, output, input_shape=tuple(full[1:]) if batched else tuple(full),
                 output_shape=oshape, source=path, input_name=inp.name, output_name=out_name,
                 meta={"onnx_input_dims": dims, "ir_version": int(model.ir_version),
                       "opset": int(opset)})
