"""Network → ONNX (Gemm/Relu or MatMul/Add/Relu), loadable by onnxruntime.

``onnx.helper.make_model`` in onnx 1.23 stamps an IR version newer than onnxruntime 1.31 accepts,
so the IR version and opset are set explicitly (:data:`IR_VERSION`, :data:`OPSET`, from
:mod:`.onnx_model`).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..network import Network
from .onnx_model import DTYPES as _DTYPES
from .onnx_model import IR_VERSION, OPSET, finish_model

__all__ = ["to_onnx", "IR_VERSION", "OPSET"]

def to_onnx(network: Network, path=None, input_shape=None, dtype: str = "float32",
            gemm: bool = True, input_name: str = "input", output_name: str = "output",
            input_dims=None, output_dims=None) -> onnx.ModelProto:
    """Export a canonical network as an ONNX model.

    Parameters
    ----------
    network : Network or dpllnn.model.graph.Graph
        The network; ``affines[k].W`` has shape ``(n_out, n_in)``, float64.  A graph is
        exported node by node (:func:`dpllnn.io.graph_export.graph_to_onnx`; ``gemm`` ignored).
    path : str or os.PathLike, optional
        When given, the model is also written there atomically (temporary file in the same
        directory, then ``os.replace``).
    input_shape : tuple of int, optional
        Input shape without the batch dimension; the ONNX input is ``[1] + input_shape`` and a
        ``Flatten`` node (C order) precedes the first layer.  Default: ``[1, n_inputs]``.
    dtype : {"float32", "float64"}
        Tensor element type of the input, weights and output.  ``"float64"`` keeps the weights
        bit-exact, so onnxruntime reproduces :meth:`Network.forward` to rounding.
    gemm : bool
        ``True``: one ``Gemm`` (``transB=1``) per affine layer; ``False``: ``MatMul`` + ``Add``.
    input_name, output_name : str
        Names of the graph input and output.
    input_dims, output_dims : list, optional
        Declared shapes of the input and output, batch dimension included, to copy a source
        model's interface (an entry that is a string or None is symbolic, e.g. ``["N", 5]``).
        ``input_dims`` overrides ``input_shape``; an ``output_dims`` other than ``[1, n_out]``
        (``[5]``, ``[1, 1, 5]``) adds a final ``Reshape``.

    Returns
    -------
    onnx.ModelProto
        IR version :data:`IR_VERSION`, opset :data:`OPSET`; output shape ``[1, n_outputs]``.

    Raises
    ------
    ValueError
        Unknown ``dtype`` or an ``input_shape`` whose size is not ``n_inputs``.
    OSError
        When writing ``path`` fails (no partial file is left behind).
    """
    if getattr(network, "is_graph", False):
        from .graph_export import graph_to_onnx
        return graph_to_onnx(network, path, input_shape, dtype, input_name, output_name)
    if dtype not in _DTYPES:
        raise ValueError(f"to_onnx: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    np_dtype, elem = _DTYPES[dtype]
    n_in, n_out = network.n_inputs, network.n_outputs
    shape = [1, n_in] if input_shape is None else [1] + [int(s) for s in input_shape]
    if input_dims is not None:
        shape = [d if isinstance(d, int) and d > 0 else str(d or "N") for d in input_dims]
    if int(np.prod([d for d in shape if isinstance(d, int)])) != n_in:
        raise ValueError(f"to_onnx: input shape {shape} does not have {n_in} elements")

    nodes, inits = [], []
    cur = input_name
    if len(shape) == 1:                  # an unbatched vector input: Gemm needs [1, n_in]
        inits.append(numpy_helper.from_array(np.array([1, n_in], dtype=np.int64), "in_shape"))
        nodes.append(helper.make_node("Reshape", [cur, "in_shape"], ["flat"], name="reshape_in"))
        cur = "flat"
    elif len(shape) != 2:
        nodes.append(helper.make_node("Flatten", [cur], ["flat"], name="flatten", axis=1))
        cur = "flat"
    out_shape, reshape = _output_shape(output_dims, n_out)
    last = len(network.affines) - 1
    for k, aff in enumerate(network.affines):
        wname, bname = f"W{k}", f"b{k}"
        z = (output_name if reshape is None else "flat_out") if k == last else f"z{k}"
        if gemm:
            inits.append(numpy_helper.from_array(aff.W.astype(np_dtype), wname))
            inits.append(numpy_helper.from_array(aff.b.astype(np_dtype), bname))
            nodes.append(helper.make_node("Gemm", [cur, wname, bname], [z], name=f"gemm_{k}",
                                          transB=1))
        else:
            inits.append(numpy_helper.from_array(np.ascontiguousarray(aff.W.T, dtype=np_dtype),
                                                 wname))
            inits.append(numpy_helper.from_array(aff.b.astype(np_dtype), bname))
            nodes.append(helper.make_node("MatMul", [cur, wname], [f"m{k}"], name=f"matmul_{k}"))
            nodes.append(helper.make_node("Add", [f"m{k}", bname], [z], name=f"add_{k}"))
        if k < last:
            nodes.append(helper.make_node("Relu", [z], [f"a{k}"], name=f"relu_{k}"))
            cur = f"a{k}"

    if reshape is not None:
        inits.append(numpy_helper.from_array(np.array(reshape, dtype=np.int64), "out_shape"))
        nodes.append(helper.make_node("Reshape", ["flat_out", "out_shape"], [output_name],
                                      name="reshape_out"))
    return finish_model(nodes, inits, input_name, elem, shape, output_name, n_out, path,
                        out_shape=out_shape)


def _output_shape(output_dims, n_out: int):
    """(declared output shape, Reshape target or None) for ``output_dims`` (see :func:`to_onnx`)."""
    if output_dims is None:
        return [1, n_out], None
    dims = [d if isinstance(d, int) and d > 0 else str(d or "N") for d in output_dims]
    fixed = [d for d in dims if isinstance(d, int)]
    if int(np.prod(fixed)) != n_out or len(fixed) < len(dims) - 1:
        raise ValueError(f"to_onnx: output shape {dims} does not have {n_out} elements")
    if len(dims) == 2 and dims[1] == n_out:
        return dims, None                # what the Gemm chain gives: [1 or N, n_out]
    return dims, [d if isinstance(d, int) else -1 for d in dims]
