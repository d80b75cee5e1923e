"""Pooling on graph tensors for the ONNX graph importer: AveragePool / GlobalAveragePool as a
depthwise conv of ones and a Scale by the window counts (``pads``, ``count_include_pad`` and
``ceil_mode`` as onnxruntime has them); MaxPool lowered exactly into ReLUs."""
from __future__ import annotations

import numpy as np

from ..model.graph import Relu
from ..model.ops import Conv, Pad, Slice, Sum, conv_output_size
from .graph_build import _NodeError, _conv_pads, _const, _scale

__all__ = ["op_avgpool", "op_maxpool"]


def _pool_geometry(x, attrs):
    nsp = len(x.shape) - 2
    if nsp not in (1, 2):
        raise _NodeError(f"{nsp}-D pooling", unsupported=True)
    k = tuple(int(s) for s in attrs["kernel_shape"])
    s = tuple(int(t) for t in attrs.get("strides", (1,) * nsp))
    d = tuple(int(t) for t in attrs.get("dilations", (1,) * nsp))
    pads = list(_conv_pads(attrs, x.shape[2:], k, s, d))
    extra = [0] * nsp
    if attrs.get("ceil_mode", 0):
        for a, n in enumerate(x.shape[2:]):
            span = n + pads[a] + pads[nsp + a] - d[a] * (k[a] - 1) - 1
            out = -(-span // s[a]) + 1
            if (out - 1) * s[a] >= n + pads[a]:   # the last window must start inside
                out -= 1
            extra[a] = max(0, (out - 1) * s[a] + d[a] * (k[a] - 1) + 1 - (n + pads[a]
                                                                        + pads[nsp + a]))
    return nsp, k, s, d, pads, extra


def op_avgpool(b, node, v, attrs, global_=False):
    x = v[0]
    if _const(x):
        raise _NodeError("pooling of a constant", unsupported=True)
    C = x.shape[1]
    if global_:
        nsp = len(x.shape) - 2
        k, s, d, pads, extra = tuple(x.shape[2:]), (1,) * nsp, (1,) * nsp, [0] * 2 * nsp, \
            [0] * nsp
        attrs = {"count_include_pad": 1}
    else:
        nsp, k, s, d, pads, extra = _pool_geometry(x, attrs)
    full = tuple(pads[:nsp]) + tuple(p + e for p, e in zip(pads[nsp:], extra))
    ones = np.ones((C, 1) + k)
    summed = b.add(Conv(ones, np.zeros(C), x.shape, s, d, full, C), x)
    # window counts: the ones of the input (count_include_pad=0) or of the declared padded
    # region (=1), summed by the same window; the ceil-mode overhang never counts
    probe_shape = (1, 1) + tuple(x.shape[2:])
    if attrs.get("count_include_pad", 0):
        probe_shape = (1, 1) + tuple(n + pads[a] + pads[nsp + a]
                                     for a, n in enumerate(x.shape[2:]))
        probe_pads = (0,) * nsp + tuple(extra)
    else:
        probe_pads = full
    probe = Conv(np.ones((1, 1) + k), np.zeros(1), probe_shape, s, d, probe_pads, 1)
    counts = probe.forward(np.ones((1,) + probe_shape))[0]      # (1, 1, *out)
    if counts.shape[2:] != summed.shape[2:] or np.any(counts <= 0):
        raise _NodeError("pooling window counts do not match the output")
    return [_scale(b, summed, 1.0 / counts)]


def op_maxpool(b, node, v, attrs):
    x = v[0]
    if _const(x):
        raise _NodeError("pooling of a constant", unsupported=True)
    if len(node.output) > 1 and node.output[1]:
        raise _NodeError("MaxPool with an indices output", unsupported=True)
    nsp, k, s, d, pads, extra = _pool_geometry(x, attrs)
    full = tuple(pads[:nsp]) + tuple(p + e for p, e in zip(pads[nsp:], extra))
    C = x.shape[1]
    elems, valid = [], []
    probe_shape = (1, 1) + tuple(x.shape[2:])
    # each window element is a strided Slice of the (zero-)padded input
    src = b.add(Pad(x.shape, (0, 0) + full[:nsp] + (0, 0) + full[nsp:]), x) if any(full) else x
    probe_in = np.ones((1,) + probe_shape)
    if any(full):
        probe_in = Pad(probe_shape, (0, 0) + full[:nsp] + (0, 0) + full[nsp:]).forward(probe_in)
    osz = [conv_output_size(n, k[a], s[a], d[a], full[a], full[nsp + a])
           for a, n in enumerate(x.shape[2:])]
    for off in np.ndindex(*k):
        index = [(0, src.shape[0], 1), (0, C, 1)] + [
            (off[a] * d[a], off[a] * d[a] + s[a] * (osz[a] - 1) + 1, s[a]) for a in range(nsp)]
        sl = Slice(src.shape, index)
        elems.append(b.add(sl, src))
        valid.append(sl.forward(probe_in)[0])                  # 1 inside, 0 on the pad
    if any(np.any(v == 0.0) for v in valid):
        # ONNX pads MaxPool with -inf: a window element on the border is replaced by the
        # window's first element inside the input (max(a, a) = a), all linear
        first = np.argmax(np.stack(valid), axis=0)
        if not np.all(np.take_along_axis(np.stack(valid), first[None], 0)):
            raise _NodeError("a MaxPool window lies entirely in the padding")
        ref = None
        for o, e in enumerate(elems):
            sel = _scale(b, e, (first == o).astype(np.float64))
            ref = sel if ref is None else b.add(Sum((1.0, 1.0), e.shape), ref, sel)
        elems = [e if np.all(v) else b.add(Sum((1.0, 1.0), e.shape), e,
                                            _scale(b, ref, 1.0 - v))
                 for e, v in zip(elems, valid)]
    while len(elems) > 1:       # pairwise: max(a, b) = b + relu(a - b)
        nxt = []
        for i in range(0, len(elems) - 1, 2):
            a, c = elems[i], elems[i + 1]
            diff = b.add(Sum((1.0, -1.0), a.shape), a, c)
            r = b.add(Relu(a.shape), diff)
            nxt.append(b.add(Sum((1.0, 1.0), a.shape), c, r))
        if len(elems) % 2:
            nxt.append(elems[-1])
        elems = nxt
    return [elems[0]]
