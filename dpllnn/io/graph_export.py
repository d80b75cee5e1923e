"""Graph → ONNX: one or two ONNX nodes per graph node, loadable by onnxruntime.

The validation path (:mod:`dpllnn.validate`) needs an ONNX file for in-memory graphs, and
``dpllnn info``/tests use the round trip.  Element type float32 (the usual deployment type) or
float64 (weights bit-exact, so onnxruntime reproduces :meth:`Graph.forward` to rounding).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..model.graph import Graph, Relu
from ..model.ops import Concat, Conv, Dense, Pad, Reshape, Scale, Slice, Sum, Transpose
from .onnx_model import DTYPES, finish_model

__all__ = ["graph_to_onnx"]


def _conv_as_matmuls(op: Conv, x: str, out: str, emit, const, reshape) -> None:
    """A Conv in float64 ONNX: onnxruntime's CPU Conv has no double kernel, so the conv is
    written as a sum over kernel offsets of a strided Slice of the padded input times a
    (C_in, C_out) matrix (block-diagonal for groups) -- MatMul, Slice, Pad run in double."""
    W2 = op._W2                                    # (C_out, C_in/g, kh, kw)
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = op._geom
    Ho, Wo = op._out2
    N, C = op.in_shape[:2]
    co, cg = W2.shape[:2]
    g = op.groups
    x4 = reshape(x, (N, C) + tuple(op._sp), out + "r")
    xp = emit("Pad", [x4, const(np.asarray([0, 0, pt, pl, 0, 0, pb, pr], dtype=np.int64),
                                np.int64)], out + "p", mode="constant")
    acc = None
    for i in range(W2.shape[2]):
        for j in range(W2.shape[3]):
            M = np.zeros((C, co))
            for gi in range(g):
                o = slice(gi * (co // g), (gi + 1) * (co // g))
                M[gi * cg:(gi + 1) * cg, o] = W2[o, :, i, j].T
            i64 = np.int64
            sl = emit("Slice", [xp, const(np.asarray([i * dh, j * dw], dtype=i64), i64),
                                const(np.asarray([i * dh + sh * (Ho - 1) + 1,
                                                  j * dw + sw * (Wo - 1) + 1], dtype=i64), i64),
                                const(np.asarray([2, 3], dtype=i64), i64),
                                const(np.asarray([sh, sw], dtype=i64), i64)], f"{out}s{i}_{j}")
            t = emit("Transpose", [sl], f"{out}t{i}_{j}", perm=[0, 2, 3, 1])
            m = emit("MatMul", [t, const(M)], f"{out}m{i}_{j}")
            acc = m if acc is None else emit("Add", [acc, m], f"{out}a{i}_{j}")
    acc = emit("Add", [acc, const(op.b)], out + "b")
    y = emit("Transpose", [acc], out + "y", perm=[0, 3, 1, 2])
    reshape(y, op.out_shape, out)


def graph_to_onnx(graph: Graph, path=None, input_shape=None, dtype: str = "float32",
                  input_name: str = "input", output_name: str = "output") -> onnx.ModelProto:
    """Export a :class:`Graph` as an ONNX model (IR and opset of :mod:`.onnx_model`).

    Parameters
    ----------
    graph : Graph
    path : str or os.PathLike, optional -- also written there atomically
    input_shape : tuple of int, optional -- the ONNX input is ``[1] + input_shape`` (default
        ``[1, n_inputs]``); a Reshape to the graph's own input shape follows it
    dtype : {"float32", "float64"}
    input_name, output_name : str

    Returns
    -------
    onnx.ModelProto -- output shape ``[1, n_outputs]``

    Raises
    ------
    ValueError -- unknown dtype, or an ``input_shape`` without ``n_inputs`` elements
    OSError -- writing ``path`` failed (no partial file is left)
    """
    if dtype not in DTYPES:
        raise ValueError(f"to_onnx: dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    np_dtype, elem = DTYPES[dtype]
    shape = [1, graph.n_inputs] if input_shape is None else [1] + [int(s) for s in input_shape]
    if int(np.prod(shape)) != graph.n_inputs:
        raise ValueError(f"to_onnx: input_shape {tuple(shape[1:])} does not have "
                         f"{graph.n_inputs} elements")
    nodes, inits = [], []
    counter = [0]

    def const(arr, dt=None):
        counter[0] += 1
        name = f"c{counter[0]}"
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dt or np_dtype), name))
        return name

    def emit(op_type, ins, out, **attrs):
        nodes.append(helper.make_node(op_type, ins, [out], name=f"{op_type.lower()}_{out}",
                                      **attrs))
        return out

    def reshape(x, shp, out):
        return emit("Reshape", [x, const(np.asarray(shp, dtype=np.int64), np.int64)], out)

    names = [reshape(input_name, graph.nodes[0].shape, "t0")]
    for k, nd in enumerate(graph.nodes[1:], 1):
        op, out = nd.op, f"t{k}"
        ins = [names[i] for i in nd.inputs]
        if isinstance(op, Relu):
            emit("Relu", ins, out)
        elif isinstance(op, Dense):
            m = emit("MatMul", [ins[0], const(op.W.T)], out + "m")
            emit("Add", [m, const(op.b)], out)
        elif isinstance(op, Conv) and dtype == "float64":
            _conv_as_matmuls(op, ins[0], out, emit, const, reshape)
        elif isinstance(op, Conv):
            emit("Conv", [ins[0], const(op.W), const(op.b)], out, strides=list(op.strides),
                 dilations=list(op.dilations), pads=list(op.pads), group=int(op.groups),
                 kernel_shape=list(op.W.shape[2:]))
        elif isinstance(op, Scale):
            m = emit("Mul", [ins[0], const(op.s)], out + "m")
            emit("Add", [m, const(op.t)], out)
        elif isinstance(op, Sum):
            terms = []
            for j, (c, x) in enumerate(zip(op.coefs, ins)):
                terms.append(x if c == 1.0 else
                             emit("Mul", [x, const(np.asarray(c))], f"{out}s{j}"))
            acc = terms[0]
            for j, t in enumerate(terms[1:], 1):
                acc = emit("Add", [acc, t], out if j == len(terms) - 1 else f"{out}a{j}")
        elif isinstance(op, Pad):
            emit("Pad", [ins[0], const(np.asarray(op.pads, dtype=np.int64), np.int64)], out,
                 mode="constant")
        elif isinstance(op, Reshape):
            reshape(ins[0], op.shape, out)
        elif isinstance(op, Transpose):
            emit("Transpose", ins, out, perm=list(op.perm))
        elif isinstance(op, Slice):
            i64 = np.int64
            st, en, sp = (np.asarray([t[q] for t in op.index], dtype=i64) for q in range(3))
            emit("Slice", [ins[0], const(st, i64), const(en, i64),
                           const(np.arange(len(op.index), dtype=i64), i64), const(sp, i64)], out)
        elif isinstance(op, Concat):
            emit("Concat", ins, out, axis=int(op.axis))
        else:
            raise TypeError(f"to_onnx: no ONNX form for {type(op).__name__} (node {k})")
        names.append(out)
    reshape(names[graph.output], [1, graph.n_outputs], output_name)
    return finish_model(nodes, inits, input_name, elem, shape, output_name, graph.n_outputs,
                        path)
