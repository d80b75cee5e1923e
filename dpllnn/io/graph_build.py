"""The primitives the ONNX graph importer's handlers share: graph tensors (:class:`_T`), the
node list being built (:class:`_Builder`), constants, element-wise Scale, conv/pool padding."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.graph import InputOp, Node
from ..model.ops import Scale
from . import onnx_import as chain


@dataclass(frozen=True)
class _T:
    """A tensor computed by graph node ``node``, of full ONNX shape ``shape``."""

    node: int
    shape: tuple


class _NodeError(chain._NodeError):
    pass


class _Builder:
    def __init__(self, in_shape, name):
        self.nodes = [Node(InputOp(tuple(in_shape)), (), name)]
        self.label = name

    def add(self, op, *inputs: _T) -> _T:
        self.nodes.append(Node(op, tuple(t.node for t in inputs), self.label))
        return _T(len(self.nodes) - 1, tuple(op.out_shape))


def _const(v) -> bool:
    return not isinstance(v, _T)


def _f64(c):
    return np.asarray(c, dtype=np.float64)


def _scale(b: _Builder, x: _T, s=1.0, t=0.0) -> _T:
    s, t = _f64(s), _f64(t)
    shp = np.broadcast_shapes(x.shape, s.shape, t.shape)
    if shp != x.shape:
        raise _NodeError(f"a constant of shape {np.broadcast_shapes(s.shape, t.shape)} broadcasts "
                         f"the input tensor {x.shape} to {shp}", unsupported=True)
    return b.add(Scale(s, t, x.shape), x)


def _conv_pads(attrs, spatial, kernel, strides, dil):
    nsp = len(spatial)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pb, pe = [], []
        for n, k, s, d in zip(spatial, kernel, strides, dil):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pb.append(lo)
            pe.append(total - lo)
        return tuple(pb + pe)
    if auto == "VALID":
        return (0,) * (2 * nsp)
    if auto not in ("NOTSET", ""):
        raise _NodeError(f"auto_pad {auto!r}")
    return tuple(int(p) for p in attrs.get("pads", (0,) * (2 * nsp)))
