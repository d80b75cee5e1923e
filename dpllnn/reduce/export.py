"""Write a reduced network as a drop-in replacement for its source model.

A pruned or sliced network keeps the source ONNX model's interface: the element type (float32 in,
float32 out), the input and output names and their declared shapes (symbolic batch dimensions
included).  The equivalence proof must hold for the network *as written*, so :func:`write_like`
re-imports the file it wrote: with float32 the folded weights are rounded, and the proof is made
on those rounded weights, with the same tolerance as in float64
(:func:`dpllnn.reduce.equiv.default_eps`: ``1e-6 * (1 + max |N|)`` on the region).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from ..network import Network

__all__ = ["Interface", "interface_of", "write_like", "default_interface", "write_reduced"]

_ELEM = {TensorProto.FLOAT: "float32", TensorProto.DOUBLE: "float64",
         # no float16 export (onnxruntime's CPU Gemm has no float16 kernel): float32 keeps every
         # float16 value exactly
         TensorProto.FLOAT16: "float32"}


@dataclass(frozen=True)
class Interface:
    """The graph input and output of an ONNX model.

    Attributes
    ----------
    dtype : str -- ``"float32"`` or ``"float64"`` (the input's element type)
    input_name, output_name : str
    input_dims, output_dims : tuple -- declared dims, batch included; str for a symbolic one
    """

    dtype: str
    input_name: str
    output_name: str
    input_dims: tuple
    output_dims: tuple


def _dims(vi) -> tuple:
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else
                 (d.dim_param or "N") for d in vi.type.tensor_type.shape.dim)


def interface_of(path) -> Interface:
    """The interface of the ONNX file at ``path`` (also ``.onnx.gz``)."""
    from ..io.gz import load_model
    g = load_model(path).graph
    inits = {t.name for t in g.initializer}
    inp = next(i for i in g.input if i.name not in inits)
    out = g.output[0]
    return Interface(_ELEM.get(inp.type.tensor_type.elem_type, "float32"), inp.name, out.name,
                     _dims(inp), _dims(out))


def write_like(network: Network, source: Interface, path, dtype: str | None = None) -> Network:
    """Write ``network`` to ``path`` (atomically) with ``source``'s names and shapes and element
    type ``dtype`` (default: the source's), and return the network read back from that file:
    the weights as written, on which any equivalence proof has to be made."""
    from ..io.onnx_export import to_onnx
    from ..io.onnx_load import load_onnx
    to_onnx(network, path, dtype=dtype or source.dtype, input_name=source.input_name,
            output_name=source.output_name, input_dims=list(source.input_dims),
            output_dims=list(source.output_dims))
    written = load_onnx(path)
    assert written.n_inputs == network.n_inputs and written.n_outputs == network.n_outputs
    written.meta.update({k: v for k, v in network.meta.items() if k not in written.meta})
    return written


def default_interface(network: Network) -> Interface:
    """What :func:`dpllnn.io.onnx_export.to_onnx` writes by default, in float64 (for a network
    without a source file)."""
    return Interface("float64", "input", "output", (1, *network.input_shape),
                     (1, network.n_outputs))



def _weights_equal(A: Network, B: Network) -> bool:
    return len(A.affines) == len(B.affines) and all(
        a.W.shape == b.W.shape and np.array_equal(a.W, b.W) and np.array_equal(a.b, b.b)
        for a, b in zip(A.affines, B.affines))


def write_reduced(network: Network, stable, small: Network, source: Interface, path, boxes,
                  dtype: str | None = None, eps: float | None = None, tiling=None, seed: int = 0):
    """Write the pruned ``small`` (from ``prune_network(network, stable)``) like ``source`` and
    return ``(written, report_or_None)``: the network read back from ``path`` and, when it had to
    be pruned again, the new :class:`PruneReport`.

    Folding active neurons and lumping create new weights; in float32 they are rounded, and the
    sound bounds on ``N - N'`` are then far too loose for a proof at ``eps`` on large regions
    (ACAS Xu prop_1: 1e-2 against eps = 1e-6).  So when the written weights differ from
    ``small``'s and the fast proofs (bounds, neuron matching) fail on them, the network is pruned
    again with only the reductions that keep the source's weights as they are (removing inactive
    and dead neurons), which float32 holds exactly, and written again.
    """
    from .equiv import check_equivalence
    from .prune import prune_network
    written = write_like(small, source, path, dtype=dtype)
    if _weights_equal(small, written):
        return written, None
    fast = check_equivalence(network, written, boxes, eps, use_milp=False, use_verify=False,
                             seed=seed, phases=[stable.phase] * len(boxes), tiling=tiling)
    if fast.proved:
        return written, None
    small, rep = prune_network(network, stable, fold=False, lump=False)
    return write_like(small, source, path, dtype=dtype), rep
