"""What every ONNX export of dpllnn shares: the IR version and opset it writes, the element
types, and the last step (graph -> model -> atomic file).

``onnx.helper.make_model`` in onnx 1.23 stamps an IR version newer than onnxruntime 1.31 accepts,
so the IR version and opset are set explicitly.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper

from .atomic import atomic_write_bytes

__all__ = ["IR_VERSION", "OPSET", "DTYPES", "finish_model"]

#: ONNX IR version written into exported models (onnxruntime 1.31 supports up to 10/11).
IR_VERSION = 8
#: Default-domain opset of exported models (Gemm, Relu, Flatten, MatMul, Add accept double).
OPSET = 13
#: dtype name -> (numpy type, ONNX element type)
DTYPES = {"float32": (np.float32, TensorProto.FLOAT), "float64": (np.float64, TensorProto.DOUBLE)}


def finish_model(nodes, inits, input_name: str, elem: int, in_shape, output_name: str,
                 n_out: int, path=None, out_shape=None) -> onnx.ModelProto:
    """Wrap ``nodes``/``inits`` into a model with input ``in_shape`` and output ``out_shape``
    (default ``[1, n_out]``; a string entry is a symbolic dimension), IR :data:`IR_VERSION`,
    opset :data:`OPSET`; written atomically to ``path`` when given (OSError if that fails; no
    partial file is left)."""
    graph = helper.make_graph(
        nodes, "dpllnn",
        [helper.make_tensor_value_info(input_name, elem, list(in_shape))],
        [helper.make_tensor_value_info(output_name, elem,
                                       [1, n_out] if out_shape is None else list(out_shape))],
        initializer=inits)
    model = helper.make_model(graph, producer_name="dpllnn",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if path is not None:
        atomic_write_bytes(os.fspath(path), model.SerializeToString())
    return model
