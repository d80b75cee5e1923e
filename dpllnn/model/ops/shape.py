"""Structural ops (0/1 matrices): Pad, Reshape, Transpose, Concat, Slice."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import StructuralOp, _frozen, _size

__all__ = ["Pad", "Reshape", "Transpose", "Concat", "Slice"]


# ---- shape ops --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Pad(StructuralOp):
    """Zero padding (ONNX Pad, mode constant, value 0): ``pads`` = (begin..., end...) per axis."""

    in_shape: tuple
    pads: tuple

    def __post_init__(self):
        shp = tuple(int(v) for v in self.in_shape)
        pd = tuple(int(p) for p in self.pads)
        if len(pd) != 2 * len(shp) or min(pd, default=0) < 0:
            raise ValueError(f"Pad: pads {pd} invalid for shape {shp} (negative pads unsupported)")
        _frozen(self, "in_shape", shp)
        _frozen(self, "pads", pd)

    @property
    def out_shape(self):
        r = len(self.in_shape)
        return tuple(n + self.pads[a] + self.pads[r + a] for a, n in enumerate(self.in_shape))

    def _slices(self):
        return (slice(None),) + tuple(slice(self.pads[a], self.pads[a] + n)
                                      for a, n in enumerate(self.in_shape))

    def forward(self, X):
        Y = np.zeros((X.shape[0],) + self.out_shape)
        Y[self._slices()] = X
        return Y

    def transpose(self, A):
        return (np.ascontiguousarray(A[self._slices()]),)


@dataclass(frozen=True, eq=False)
class Reshape(StructuralOp):
    """C-order reshape (ONNX Reshape, Flatten, Squeeze, Unsqueeze)."""

    in_shape: tuple
    shape: tuple

    def __post_init__(self):
        _frozen(self, "in_shape", tuple(int(v) for v in self.in_shape))
        _frozen(self, "shape", tuple(int(v) for v in self.shape))
        if _size(self.in_shape) != _size(self.shape):
            raise ValueError(f"Reshape: {self.in_shape} -> {self.shape} changes the size")

    @property
    def out_shape(self):
        return self.shape

    def forward(self, X):
        return X.reshape((X.shape[0],) + self.shape)

    def transpose(self, A):
        return (A.reshape((A.shape[0],) + self.in_shape),)


@dataclass(frozen=True, eq=False)
class Transpose(StructuralOp):
    """Axis permutation (ONNX Transpose; ``perm`` over the op's axes)."""

    in_shape: tuple
    perm: tuple

    def __post_init__(self):
        _frozen(self, "in_shape", tuple(int(v) for v in self.in_shape))
        _frozen(self, "perm", tuple(int(p) for p in self.perm))
        if sorted(self.perm) != list(range(len(self.in_shape))):
            raise ValueError(f"Transpose: perm {self.perm} invalid for shape {self.in_shape}")

    @property
    def out_shape(self):
        return tuple(self.in_shape[p] for p in self.perm)

    def forward(self, X):
        return np.ascontiguousarray(X.transpose((0,) + tuple(p + 1 for p in self.perm)))

    def transpose(self, A):
        inv = np.argsort(self.perm)
        return (np.ascontiguousarray(A.transpose((0,) + tuple(int(p) + 1 for p in inv))),)


@dataclass(frozen=True, eq=False)
class Concat(StructuralOp):
    """Concatenation along ``axis`` (ONNX Concat of input-dependent tensors)."""

    shapes: tuple
    axis: int

    def __post_init__(self):
        shapes = tuple(tuple(int(v) for v in s) for s in self.shapes)
        ax = int(self.axis)
        r = len(shapes[0])
        ax = ax + r if ax < 0 else ax
        for s in shapes:
            if len(s) != r or any(s[a] != shapes[0][a] for a in range(r) if a != ax):
                raise ValueError(f"Concat: shapes {shapes} do not match on axis {ax}")
        _frozen(self, "shapes", shapes)
        _frozen(self, "axis", ax)

    @property
    def in_shapes(self):
        return self.shapes

    @property
    def out_shape(self):
        s = list(self.shapes[0])
        s[self.axis] = sum(t[self.axis] for t in self.shapes)
        return tuple(s)

    def forward(self, *X):
        return np.concatenate(X, axis=self.axis + 1)

    def transpose(self, A):
        cuts = np.cumsum([s[self.axis] for s in self.shapes])[:-1]
        return tuple(np.ascontiguousarray(p) for p in np.split(A, cuts, axis=self.axis + 1))


@dataclass(frozen=True, eq=False)
class Slice(StructuralOp):
    """Strided slice (ONNX Slice with constant starts/ends/axes/steps, positive steps):
    ``index`` holds one ``(start, stop, step)`` per axis of ``in_shape``, already clipped."""

    in_shape: tuple
    index: tuple

    def __post_init__(self):
        shp = tuple(int(v) for v in self.in_shape)
        idx = tuple(tuple(int(v) for v in t) for t in self.index)
        if len(idx) != len(shp) or any(st < 1 for _, _, st in idx):
            raise ValueError(f"Slice: index {idx} invalid for shape {shp}")
        _frozen(self, "in_shape", shp)
        _frozen(self, "index", idx)
        _frozen(self, "_sl", (slice(None),) + tuple(slice(a, b, c) for a, b, c in idx))
        out = np.empty(shp, dtype=np.bool_)[self._sl[1:]].shape
        if min(out, default=1) < 1:
            raise ValueError(f"Slice: empty result {out}")
        _frozen(self, "_out", tuple(out))

    @property
    def out_shape(self):
        return self._out

    def forward(self, X):
        return np.ascontiguousarray(X[self._sl])

    def transpose(self, A):
        Y = np.zeros((A.shape[0],) + self.in_shape)
        Y[self._sl] = A
        return (Y,)

    def transpose_region(self, A):
        """The transpose as ``(index, values)``: ``A`` on the region ``index`` of the
        ``(m, *in_shape)`` input coefficients, zero elsewhere (the backward pass adds it in
        place instead of building :meth:`transpose`'s full-size array)."""
        return self._sl, A
