"""ONNX → :class:`~dpllnn.network.Network` (canonical affine/ReLU form, float64).

The importer walks the graph once, in topological order, keeping for every tensor either a constant
(``ndarray``) or a :class:`_Sym`: an affine map of the current *segment input* (the flattened
network input, or the output of the latest ReLU).  A ``_Sym`` stores ``W`` with shape
``(n,) + shape`` (one coefficient slice per segment input) and ``b`` with shape ``shape``, so every
linear operator is applied to ``b`` with numpy semantics and to ``W`` slice-wise; shape-only
operators (Flatten, Reshape, Squeeze, Unsqueeze, Transpose) just reshape both.  A ReLU emits the
pending map as one :class:`~dpllnn.network.Affine` and starts a fresh identity map, so consecutive
affine operators are folded and a leading or trailing ReLU gets an identity layer on its far side.

Tensors are tracked with their full ONNX shape, batch dimension included (a symbolic or zero
leading dimension is taken as a batch of 1).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import OnnxError, UnsupportedOperator
from ..network import Affine, Network

__all__ = ["network_from_model", "SUPPORTED_OPS"]


@dataclass
class _Sym:
    """A tensor that is an affine function of the current segment input."""

    W: np.ndarray  # shape (n,) + shape
    b: np.ndarray  # shape `shape`
    seg: int

    @property
    def shape(self) -> tuple[int, ...]:
        return self.b.shape


class _NodeError(Exception):
    """Raised by operator handlers; turned into OnnxError/UnsupportedOperator naming the node."""

    def __init__(self, msg: str, unsupported: bool = False):
        super().__init__(msg)
        self.unsupported = unsupported


# ---- linear algebra on constants and _Sym ---------------------------------------------------
def _f64(c: np.ndarray) -> np.ndarray:
    return np.asarray(c, dtype=np.float64)


def _lift(W: np.ndarray, ndim: int) -> np.ndarray:
    """Insert unit axes after the leading axis so that the tensor part has ``ndim`` axes."""
    k = W.ndim - 1
    if k >= ndim:
        return W
    return W.reshape((W.shape[0],) + (1,) * (ndim - k) + W.shape[1:])


def _same_seg(x: _Sym, y: _Sym) -> None:
    if x.seg != y.seg:
        raise _NodeError("combines tensors from different ReLU layers (skip connection)",
                         unsupported=True)


def _promote(c, like: _Sym) -> _Sym:
    """A constant as a _Sym of ``like``'s segment (zero coefficients, no memory)."""
    c = _f64(c)
    return _Sym(np.broadcast_to(np.zeros(()), (like.W.shape[0],) + c.shape), c, like.seg)


def _add(x, y, sign: float = 1.0):
    """``x + sign * y`` for constants and _Sym (numpy broadcasting)."""
    if not isinstance(x, _Sym) and not isinstance(y, _Sym):
        return x + y if sign > 0 else x - y
    x = x if isinstance(x, _Sym) else _promote(x, y)
    y = y if isinstance(y, _Sym) else _promote(y, x)
    _same_seg(x, y)
    b = x.b + sign * y.b
    W = _lift(x.W, b.ndim) + sign * _lift(y.W, b.ndim)
    return _Sym(np.broadcast_to(W, (W.shape[0],) + b.shape), b, x.seg)


def _scale(x, y, divide: bool = False):
    """``x * y`` (or ``x / y``) where at most one operand depends on the input."""
    if isinstance(y, _Sym) and (divide or isinstance(x, _Sym)):
        raise _NodeError("division by an input-dependent tensor" if divide else
                         "product of two input-dependent tensors is not piecewise linear",
                         unsupported=True)
    if not isinstance(x, _Sym) and not isinstance(y, _Sym):
        return x / y if divide else x * y
    s, c = (x, _f64(y)) if isinstance(x, _Sym) else (y, _f64(x))
    op = np.divide if divide else np.multiply
    b = op(s.b, c)
    return _Sym(np.broadcast_to(op(_lift(s.W, b.ndim), c), (s.W.shape[0],) + b.shape), b, s.seg)


def _matmul(x, y):
    if isinstance(x, _Sym) and isinstance(y, _Sym):
        raise _NodeError("product of two input-dependent tensors is not piecewise linear",
                         unsupported=True)
    if not isinstance(x, _Sym) and not isinstance(y, _Sym):
        return np.matmul(x, y)
    if isinstance(x, _Sym):
        c = _f64(y)
        b = np.matmul(x.b, c)
        n = x.W.shape[0]
        Wl = x.W.reshape((n,) + (1,) * (c.ndim - 1) + x.shape) if x.b.ndim == 1 \
            else _lift(x.W, c.ndim)
        return _Sym(np.matmul(Wl, c).reshape((n,) + b.shape), b, x.seg)
    c = _f64(x)
    b = np.matmul(c, y.b)
    n = y.W.shape[0]
    if y.b.ndim == 1:
        Wl = y.W.reshape((n,) + (1,) * (max(c.ndim, 2) - 2) + (y.shape[0], 1))
    else:
        Wl = _lift(y.W, c.ndim)
    return _Sym(np.matmul(c, Wl).reshape((n,) + b.shape), b, y.seg)


def _reshape(x, shape):
    shape = tuple(int(s) for s in shape)
    if not isinstance(x, _Sym):
        return np.reshape(x, shape)
    b = x.b.reshape(shape)
    return _Sym(x.W.reshape((x.W.shape[0],) + b.shape), b, x.seg)


def _transpose(x, perm):
    if not isinstance(x, _Sym):
        return np.transpose(x, perm)
    return _Sym(x.W.transpose((0,) + tuple(p + 1 for p in perm)), x.b.transpose(perm), x.seg)


def _shape(x) -> tuple[int, ...]:
    return x.shape if isinstance(x, _Sym) else np.shape(x)


# ---- operator handlers: (node, inputs, attrs) -> list of outputs ------------------------------
def _axes_arg(node, vals, attrs, opset):
    if len(vals) > 1 and vals[1] is not None:
        if isinstance(vals[1], _Sym):
            raise _NodeError("axes must be constant")
        return [int(a) for a in np.asarray(vals[1]).reshape(-1)]
    return [int(a) for a in attrs["axes"]] if "axes" in attrs else None


def _op_gemm(node, vals, attrs, opset):
    A, B = vals[0], vals[1]
    if len(_shape(A)) != 2 or len(_shape(B)) != 2:
        raise _NodeError(f"Gemm needs 2-D operands, got {_shape(A)} and {_shape(B)}")
    if attrs.get("transA", 0):
        A = _transpose(A, (1, 0))
    if attrs.get("transB", 0):
        B = _transpose(B, (1, 0))
    y = _matmul(A, B)
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if alpha != 1.0:
        y = _scale(y, np.float64(alpha))
    if len(vals) > 2 and vals[2] is not None:
        C = vals[2] if beta == 1.0 else _scale(vals[2], np.float64(beta))
        y = _add(y, C)
    return [y]


def _op_bn(node, vals, attrs, opset):
    if attrs.get("training_mode", 0):
        raise _NodeError("BatchNormalization in training mode", unsupported=True)
    x, scale, bias, mean, var = vals[:5]
    if any(isinstance(v, _Sym) for v in (scale, bias, mean, var)):
        raise _NodeError("BatchNormalization parameters must be constant")
    rank = len(_shape(x))
    if rank < 2:
        raise _NodeError(f"BatchNormalization input must have rank >= 2, got {_shape(x)}")
    ps = (-1,) + (1,) * (rank - 2)
    eps = float(attrs.get("epsilon", 1e-5))
    s = _f64(scale) / np.sqrt(_f64(var) + eps)
    y = _scale(_add(x, _f64(mean).reshape(ps), -1.0), s.reshape(ps))
    return [_add(y, _f64(bias).reshape(ps))]


def _op_flatten(node, vals, attrs, opset):
    shp = _shape(vals[0])
    axis = int(attrs.get("axis", 1))
    axis = axis + len(shp) if axis < 0 else axis
    if not 0 <= axis <= len(shp):
        raise _NodeError(f"Flatten axis {axis} out of range for shape {shp}")
    return [_reshape(vals[0], (int(np.prod(shp[:axis])), int(np.prod(shp[axis:]))))]


def _op_reshape(node, vals, attrs, opset):
    if len(vals) > 1:
        if isinstance(vals[1], _Sym):
            raise _NodeError("Reshape target shape must be constant")
        target = [int(s) for s in np.asarray(vals[1]).reshape(-1)]
    else:
        target = [int(s) for s in attrs["shape"]]
    shp = _shape(vals[0])
    if not attrs.get("allowzero", 0):
        target = [shp[i] if s == 0 else s for i, s in enumerate(target)]
    return [_reshape(vals[0], target)]


def _op_squeeze(node, vals, attrs, opset):
    shp = _shape(vals[0])
    axes = _axes_arg(node, vals, attrs, opset)
    if axes is None:
        axes = [i for i, d in enumerate(shp) if d == 1]
    axes = {a + len(shp) if a < 0 else a for a in axes}
    if any(not 0 <= a < len(shp) or shp[a] != 1 for a in axes):
        raise _NodeError(f"cannot squeeze axes {sorted(axes)} of shape {shp}")
    return [_reshape(vals[0], [d for i, d in enumerate(shp) if i not in axes])]


def _op_unsqueeze(node, vals, attrs, opset):
    shp = list(_shape(vals[0]))
    axes = _axes_arg(node, vals, attrs, opset)
    if axes is None:
        raise _NodeError("Unsqueeze without axes")
    r = len(shp) + len(axes)
    for a in sorted(a + r if a < 0 else a for a in axes):
        shp.insert(a, 1)
    return [_reshape(vals[0], shp)]


def _op_transpose(node, vals, attrs, opset):
    n = len(_shape(vals[0]))
    perm = [int(p) for p in attrs.get("perm", list(range(n))[::-1])]
    return [_transpose(vals[0], perm)]


def _op_constant(node, vals, attrs, opset):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            v = attrs[key]
            return [numpy_helper.to_array(v) if key == "value" else np.asarray(v)]
    raise _NodeError("Constant without a numeric value attribute", unsupported=True)


def _op_dropout(node, vals, attrs, opset):
    if len(vals) > 2 and vals[2] is not None and bool(np.asarray(vals[2])):
        raise _NodeError("Dropout in training mode", unsupported=True)
    return [vals[0], np.ones(_shape(vals[0]), dtype=bool)]


def _op_concat(node, vals, attrs, opset):
    axis = int(attrs["axis"])
    if not any(isinstance(v, _Sym) for v in vals):
        return [np.concatenate(vals, axis=axis)]
    syms = [v for v in vals if isinstance(v, _Sym)]
    for s in syms[1:]:
        _same_seg(syms[0], s)
    n, seg = syms[0].W.shape[0], syms[0].seg
    parts = [v if isinstance(v, _Sym) else _Sym(np.zeros((n,) + np.shape(v)), _f64(v), seg)
             for v in vals]
    b = np.concatenate([p.b for p in parts], axis=axis)
    ax = axis + b.ndim if axis < 0 else axis
    return [_Sym(np.concatenate([p.W for p in parts], axis=ax + 1), b, seg)]


def _op_cast(node, vals, attrs, opset):
    to = onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"]))
    if isinstance(vals[0], _Sym):
        if not np.issubdtype(to, np.floating):
            raise _NodeError(f"cast of an input-dependent tensor to {to}", unsupported=True)
        return [vals[0]]
    return [np.asarray(vals[0]).astype(to)]


def _op_gather(node, vals, attrs, opset):
    if any(isinstance(v, _Sym) for v in vals):
        raise _NodeError("Gather on an input-dependent tensor", unsupported=True)
    return [np.take(vals[0], np.asarray(vals[1], dtype=np.int64), axis=int(attrs.get("axis", 0)))]


def _op_shape(node, vals, attrs, opset):
    shp = np.asarray(_shape(vals[0]), dtype=np.int64)
    return [shp[int(attrs.get("start", 0)):attrs.get("end", None)]]


_OPS = {
    "Gemm": _op_gemm,
    "MatMul": lambda n, v, a, o: [_matmul(v[0], v[1])],
    "Add": lambda n, v, a, o: [_add(v[0], v[1])],
    "Sub": lambda n, v, a, o: [_add(v[0], v[1], -1.0)],
    "Mul": lambda n, v, a, o: [_scale(v[0], v[1])],
    "Div": lambda n, v, a, o: [_scale(v[0], v[1], divide=True)],
    "Neg": lambda n, v, a, o: [_scale(v[0], np.float64(-1.0))],
    "Identity": lambda n, v, a, o: [v[0]],
    "Constant": _op_constant,
    "BatchNormalization": _op_bn,
    "Dropout": _op_dropout,
    "Flatten": _op_flatten,
    "Reshape": _op_reshape,
    "Squeeze": _op_squeeze,
    "Unsqueeze": _op_unsqueeze,
    "Transpose": _op_transpose,
    "Concat": _op_concat,
    "Cast": _op_cast,
    "Gather": _op_gather,
    "Shape": _op_shape,
}
#: Operator types the importer understands (Relu is handled by the graph walk itself).
SUPPORTED_OPS = frozenset(_OPS) | {"Relu"}


# ---- the graph walk --------------------------------------------------------------------------
@contextlib.contextmanager
def node_errors(path: str, node, label: str):
    """Turn an operator handler's failure into the one-line error naming the file and node:
    UnsupportedOperator for a :class:`_NodeError` marked unsupported, OnnxError otherwise
    (both importers walk their nodes under it)."""
    try:
        yield
    except _NodeError as e:
        if e.unsupported:
            raise UnsupportedOperator(path, node.op_type, label, str(e)) from None
        raise OnnxError(path, f"node '{label}' ({node.op_type}): {e}") from None
    except (ValueError, IndexError, KeyError, TypeError, MemoryError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise OnnxError(path, f"node '{label}' ({node.op_type}): {msg}") from None


def _node_label(node, idx: int) -> str:
    return node.name or f"#{idx}"


def _dims(vi) -> list:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in t.shape.dim]


def _order(graph, known: set, out_name: str, path: str) -> list[tuple[int, onnx.NodeProto]]:
    """Nodes needed for ``out_name``, topologically sorted (stable w.r.t. file order)."""
    producer = {}
    for i, nd in enumerate(graph.node):
        for o in nd.output:
            if o:
                producer[o] = i
    need, stack = set(), [out_name]
    while stack:
        t = stack.pop()
        if t in known or t == "":
            continue
        if t not in producer:
            raise OnnxError(path, f"tensor '{t}' is used but never defined")
        i = producer[t]
        if i not in need:
            need.add(i)
            stack.extend(graph.node[i].input)
    avail, order, pending = set(known), [], sorted(need)
    while pending:  # one pass when the file is already topologically sorted
        left = []
        for i in pending:
            if all(x == "" or x in avail for x in graph.node[i].input):
                avail.update(graph.node[i].output)
                order.append(i)
            else:
                left.append(i)
        if len(left) == len(pending):
            nd = graph.node[left[0]]
            raise OnnxError(path, f"graph has a cycle at node '{_node_label(nd, left[0])}'")
        pending = left
    return [(i, graph.node[i]) for i in order]


def model_interface(model: onnx.ModelProto, path: str):
    """The checked interface of a model: ``(consts, input, output_name, dims, full, batched,
    opset)`` -- initializers as arrays, the one non-initializer input (ValueInfoProto), the
    output's name, the declared input dims (None where symbolic), the full input shape (a
    symbolic leading dimension taken as 1), whether the leading dimension is a batch of 1, and
    the default-domain opset.  Raises OnnxError (see :func:`network_from_model`)."""
    g = model.graph
    if len(g.node) == 0:
        raise OnnxError(path, "model has no nodes")
    consts: dict[str, object] = {}
    for t in g.initializer:
        try:
            consts[t.name] = numpy_helper.to_array(t)
        except (ValueError, TypeError, OSError) as e:
            raise OnnxError(path, f"cannot read initializer '{t.name}': {e}") from None
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise OnnxError(path, f"expected exactly one graph input, found {len(inputs)} ({names})")
    if len(g.output) != 1:
        raise OnnxError(path, f"expected exactly one graph output, found {len(g.output)}")
    inp, out_name = inputs[0], g.output[0].name
    elem = inp.type.tensor_type.elem_type
    if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise OnnxError(path, f"input '{inp.name}' must be a float tensor (elem_type {elem})")
    dims = _dims(inp)
    if not dims:
        raise OnnxError(path, f"input '{inp.name}' has no declared shape")
    if any(d is None for d in dims[1:]):
        raise OnnxError(path, f"input '{inp.name}' has a dynamic non-leading dimension {dims}")
    full = tuple(1 if d is None else d for d in dims)
    batched = dims[0] in (None, 1)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=1)

    return consts, inp, out_name, dims, full, batched, opset


def network_from_model(model: onnx.ModelProto, path: str) -> Network:
    """Translate an in-memory ONNX model into a canonical :class:`Network`.

    Parameters
    ----------
    model : onnx.ModelProto
        The model; it must have exactly one (non-initializer) float input and one output.
    path : str
        File name used in error messages and stored as ``Network.source``.

    Returns
    -------
    Network
        Canonical form in float64; ``input_shape``/``output_shape`` exclude a leading batch
        dimension (declared as 1 or symbolic).  ``meta`` holds ``onnx_input_dims`` (declared dims,
        None for symbolic), ``ir_version`` and ``opset``.

    Raises
    ------
    UnsupportedOperator
        For an operator outside :data:`SUPPORTED_OPS`, or a supported one used non-linearly
        (e.g. product of two input-dependent tensors, skip connection across a ReLU).
    OnnxError
        For a structurally malformed model: no nodes, several or no inputs/outputs, undefined
        tensors, non-static shapes, inconsistent operand shapes (message names the node).
    """
    path = str(path)
    g = model.graph
    consts, inp, out_name, dims, full, batched, opset = model_interface(model, path)
    n = int(np.prod(full))
    env: dict[str, object] = dict(consts)
    try:
        env[inp.name] = _Sym(np.eye(n).reshape((n,) + full), np.zeros(full), 0)
    except MemoryError:
        raise OnnxError(path, f"input '{inp.name}' with {n} elements is too large") from None
    seg, affines = 0, []
    for idx, node in _order(g, set(env), out_name, path):
        label = _node_label(node, idx)
        vals = [env[x] if x else None for x in node.input]
        with node_errors(path, node, label):
            if node.op_type == "Relu":
                x = vals[0]
                if not isinstance(x, _Sym):
                    outs = [np.maximum(x, 0)]
                else:
                    if x.seg != seg:
                        raise _NodeError("ReLU of a tensor from an earlier layer (branching)",
                                         unsupported=True)
                    affines.append(Affine(x.W.reshape(x.W.shape[0], -1).T, x.b.reshape(-1)))
                    seg += 1
                    m = x.b.size
                    outs = [_Sym(np.eye(m).reshape((m,) + x.shape), np.zeros(x.shape), seg)]
            elif node.domain not in ("", "ai.onnx") or node.op_type not in _OPS:
                raise UnsupportedOperator(path, node.op_type, label)
            else:
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                outs = _OPS[node.op_type](node, vals, attrs, opset)
        for name, val in zip(node.output, outs):
            if name:
                env[name] = val

    y = env[out_name]
    if not isinstance(y, _Sym):
        raise OnnxError(path, f"output '{out_name}' does not depend on the input")
    if y.seg != seg:
        raise UnsupportedOperator(path, "Relu", "(output)",
                                  "a ReLU result does not reach the output (branching)")
    affines.append(Affine(y.W.reshape(y.W.shape[0], -1).T, y.b.reshape(-1)))
    for k, a in enumerate(affines):
        if not (np.isfinite(a.W).all() and np.isfinite(a.b).all()):
            raise OnnxError(path, f"affine layer {k} has a NaN or infinite weight or bias "
                            "(after folding constants)")
    oshape = tuple(y.shape)
    if batched and oshape and oshape[0] == 1:
        oshape = oshape[1:]
    return Network(affines=affines,
                   input_shape=tuple(full[1:]) if batched else full,
                   output_shape=oshape, source=path, input_name=inp.name, output_name=out_name,
                   meta={"onnx_input_dims": dims, "ir_version": int(model.ir_version),
                         "opset": int(opset)})
