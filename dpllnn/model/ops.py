"""Linear operators of the graph model (DESIGN.md §7): linear algebra only, matrix-free.

Every op is a frozen dataclass over numpy with the same few methods.  Shapes exclude the leading
*batch* axis of the arrays passed in: an op with ``in_shapes[i]`` and ``out_shape`` maps inputs of
shape ``(B, *in_shapes[i])`` to ``(B, *out_shape)``.  (The ONNX batch dimension of size 1 is part
of the op's shapes; the batch axis here is the one the bound engine and the attack use for many
points or many backward rows at once.)

- ``forward(*X)``: the op, bias included, float64;
- ``transpose(A)``: the vector-Jacobian product without the bias, ``A`` of shape
  ``(m, *out_shape)`` -> a tuple of ``(m, *in_shapes[i])``, so that
  ``<A, op(x) - bias> = sum_i <op^T(A)_i, x_i>`` (the adjoint identity the tests check);
- ``bias_term(A)``: ``<A, bias>`` per row, shape ``(m,)``;
- ``abs_forward(*X, bias=False)``: ``|W|`` applied to non-negative ``X`` (plus ``|bias|`` when
  asked): the magnitudes behind the rounding margin of the bound engine;
- ``to_csr()``: ``(list of scipy.sparse.csr_matrix (n_out, n_in_i), bias (n_out,))`` over the
  C-order flattened tensors (the LP encoding, and tests);
- ``fan_in``: the most products summed into one output element of ``forward`` or of
  ``transpose`` (the length ``n`` of Higham's ``gamma_n`` for that op).

Convolutions run as im2col GEMM (forward) and GEMM plus strided scatter-adds (transpose), never
FFT: the rounding-margin argument (``dpllnn.bounds.pack``) assumes ordinary sums of products,
whose error is at most ``gamma_n`` times the sum of the magnitudes of the terms.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["LinearOp", "Dense", "Conv", "Scale", "Sum", "Pad", "Reshape", "Transpose", "Concat", "Slice",
           "conv_output_size"]

#: rows of the identity pushed through ``transpose`` at once when building CSR matrices
_CSR_CHUNK = 256


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


class LinearOp:
    """Base class: the op contract of the module docstring (subclasses are frozen dataclasses)."""

    in_shapes: tuple
    out_shape: tuple

    @property
    def n_inputs(self) -> int:
        return len(self.in_shapes)

    @property
    def fan_in(self) -> int:
        return 1

    @property
    def n_params(self) -> int:
        return 0

    def forward(self, *X):
        raise NotImplementedError

    def transpose(self, A):
        raise NotImplementedError

    def bias_term(self, A) -> np.ndarray:
        return np.zeros(A.shape[0])

    def abs_forward(self, *X, bias: bool = False):
        raise NotImplementedError

    def abs_bias(self) -> np.ndarray:
        """``|bias|`` broadcast to ``out_shape`` (zeros for ops without a bias)."""
        return np.zeros(self.out_shape)

    def to_csr(self):
        """Sparse matrices of the op over flattened tensors (generic: transposed identity rows).

        Returns
        -------
        (list of scipy.sparse.csr_matrix, shape (n_out, n_in_i)), bias ndarray (n_out,)
        """
        import scipy.sparse as sp
        n_out = _size(self.out_shape)
        parts = [[] for _ in self.in_shapes]
        for s in range(0, n_out, _CSR_CHUNK):
            e = min(n_out, s + _CSR_CHUNK)
            eye = np.zeros((e - s, n_out))
            eye[np.arange(e - s), np.arange(s, e)] = 1.0
            T = self.transpose(eye.reshape((e - s,) + tuple(self.out_shape)))
            for i, t in enumerate(T):
                parts[i].append(sp.csr_matrix(t.reshape(e - s, -1)))
        mats = [sp.vstack(p, format="csr") if p else
                sp.csr_matrix((0, _size(self.in_shapes[i]))) for i, p in enumerate(parts)]
        return mats, self.bias_tensor().reshape(-1)

    def bias_tensor(self) -> np.ndarray:
        """The bias broadcast to ``out_shape`` (signed; zeros for ops without one)."""
        return np.zeros(self.out_shape)


def _frozen(obj, name, value):
    object.__setattr__(obj, name, value)


# ---- dense ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Dense(LinearOp):
    """``y = x @ W.T + b`` on the last axis (ONNX Gemm / MatMul with a constant).

    W : float64 (n_out, n_in);  b : float64 (n_out,);  in_shape ``(..., n_in)``.
    """

    W: np.ndarray
    b: np.ndarray
    in_shape: tuple

    def __post_init__(self):
        W = np.ascontiguousarray(self.W, dtype=np.float64)
        b = np.ascontiguousarray(self.b, dtype=np.float64).reshape(-1)
        shp = tuple(int(s) for s in self.in_shape)
        if W.ndim != 2 or b.shape != (W.shape[0],) or not shp or shp[-1] != W.shape[1]:
            raise ValueError(f"Dense: W {W.shape}, b {b.shape} and input {shp} do not match")
        _frozen(self, "W", W)
        _frozen(self, "b", b)
        _frozen(self, "in_shape", shp)
        _frozen(self, "Wabs", np.abs(W))

    @property
    def in_shapes(self):
        return (self.in_shape,)

    @property
    def out_shape(self):
        return self.in_shape[:-1] + (self.W.shape[0],)

    @property
    def fan_in(self):
        return max(self.W.shape)

    @property
    def n_params(self):
        return self.W.size + self.b.size

    def forward(self, X):
        return X @ self.W.T + self.b

    def transpose(self, A):
        return (A @ self.W,)

    def bias_term(self, A):
        return (A.reshape(A.shape[0], -1, self.W.shape[0]) @ self.b).sum(axis=1)

    def abs_forward(self, X, bias=False):
        Y = X @ self.Wabs.T
        return Y + np.abs(self.b) if bias else Y

    def bias_tensor(self):
        return np.broadcast_to(self.b, self.out_shape).copy()

    def abs_bias(self):
        return np.abs(self.bias_tensor())

    def to_csr(self):
        import scipy.sparse as sp
        lead = _size(self.in_shape[:-1])
        M = sp.kron(sp.identity(lead, format="csr"), sp.csr_matrix(self.W), format="csr")
        return [M], self.bias_tensor().reshape(-1)


# ---- convolution ------------------------------------------------------------------------------
def conv_output_size(n: int, k: int, stride: int, dilation: int, pad_begin: int,
                     pad_end: int) -> int:
    """Output length of one spatial axis of a convolution (ONNX Conv, floor mode)."""
    return (n + pad_begin + pad_end - dilation * (k - 1) - 1) // stride + 1


@dataclass(frozen=True, eq=False)
class Conv(LinearOp):
    """N-D convolution (ONNX Conv, 1-D and 2-D spatial), ``in_shape = (N, C, *spatial)``.

    W : float64 (C_out, C_in / groups, *kernel);  b : float64 (C_out,);  ``strides``,
    ``dilations`` per spatial axis; ``pads`` = (begin_0, begin_1, ..., end_0, end_1, ...) as in
    ONNX (explicit; ``auto_pad`` is resolved by the importer).  A 1-D conv is computed as a 2-D
    one with a unit first spatial axis.
    """

    W: np.ndarray
    b: np.ndarray
    in_shape: tuple
    strides: tuple
    dilations: tuple
    pads: tuple
    groups: int = 1

    def __post_init__(self):
        W = np.ascontiguousarray(self.W, dtype=np.float64)
        b = np.ascontiguousarray(self.b, dtype=np.float64).reshape(-1)
        shp = tuple(int(s) for s in self.in_shape)
        nsp = W.ndim - 2
        if nsp not in (1, 2) or len(shp) != nsp + 2:
            raise ValueError(f"Conv: only 1-D and 2-D convolutions (weight {W.shape}, "
                             f"input {shp})")
        g = int(self.groups)
        if b.shape != (W.shape[0],) or shp[1] != W.shape[1] * g or W.shape[0] % g:
            raise ValueError(f"Conv: weight {W.shape}, bias {b.shape}, groups {g} and input "
                             f"{shp} do not match")
        st, dl = tuple(int(s) for s in self.strides), tuple(int(s) for s in self.dilations)
        pd = tuple(int(p) for p in self.pads)
        if len(st) != nsp or len(dl) != nsp or len(pd) != 2 * nsp or min(st + dl) < 1 \
                or min(pd) < 0:
            raise ValueError(f"Conv: strides {st}, dilations {dl}, pads {pd} invalid")
        for name, v in (("W", W), ("b", b), ("in_shape", shp), ("strides", st),
                        ("dilations", dl), ("pads", pd), ("groups", g)):
            _frozen(self, name, v)
        # 2-D view of everything (a 1-D conv gets a unit first spatial axis)
        if nsp == 1:
            W2 = W[:, :, None, :]
            st2, dl2, pd2 = (1,) + st, (1,) + dl, (0, pd[0], 0, pd[1])
        else:
            W2, st2, dl2, pd2 = W, st, dl, pd
        _frozen(self, "_W2", np.ascontiguousarray(W2))
        _frozen(self, "_geom", (st2, dl2, pd2))
        sp = shp[2:] if nsp == 2 else (1,) + shp[2:]
        out = tuple(conv_output_size(sp[a], W2.shape[2 + a], st2[a], dl2[a], pd2[a], pd2[2 + a])
                    for a in range(2))
        if min(out) < 1:
            raise ValueError(f"Conv: kernel {W.shape[2:]} larger than padded input {shp}")
        _frozen(self, "_sp", sp)
        _frozen(self, "_out2", out)
        _frozen(self, "_out_shape", (shp[0], W.shape[0]) + (out if nsp == 2 else out[1:]))
        co, cg = W.shape[0], W.shape[1]
        kk = W2.shape[2] * W2.shape[3]
        # per group: (C_out/g, C_in/g * kh * kw) matrices
        Wg = W2.reshape(g, co // g, cg * kk)
        _frozen(self, "_Wg", Wg)
        _frozen(self, "_Wg_abs", np.abs(Wg))

    @property
    def in_shapes(self):
        return (self.in_shape,)

    @property
    def out_shape(self):
        return self._out_shape

    @property
    def fan_in(self):
        co, cg = self.W.shape[:2]
        k = _size(self.W.shape[2:])
        return max(cg * k, (co // self.groups) * k)

    @property
    def n_params(self):
        return self.W.size + self.b.size

    def _cols(self, X):
        """im2col: (B', C, Ho, Wo, kh, kw) strided view of the zero-padded input."""
        (sh, sw), (dh, dw), (pt, pl, pb, pr) = self._geom
        Bp = X.shape[0]
        C = self.in_shape[1]
        Xp = np.zeros((Bp, C, self._sp[0] + pt + pb, self._sp[1] + pl + pr))
        Xp[:, :, pt:pt + self._sp[0], pl:pl + self._sp[1]] = X.reshape(Bp, C, *self._sp)
        s = Xp.strides
        Ho, Wo = self._out2
        kh, kw = self._W2.shape[2:]
        return as_strided(Xp, (Bp, C, Ho, Wo, kh, kw),
                          (s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw),
                          writeable=False)

    def _apply(self, X, Wg):
        B = X.shape[0]
        N = self.in_shape[0]
        g = self.groups
        cols = self._cols(X.reshape((B * N,) + self.in_shape[1:]))
        Bp, C, Ho, Wo, kh, kw = cols.shape
        cg = C // g
        if g == 1:      # one GEMM: (B' Ho Wo, C kh kw) x (C kh kw, C_out)
            c = cols.transpose(0, 2, 3, 1, 4, 5).reshape(Bp, Ho, Wo, cg * kh * kw)
            out = (c @ Wg[0].T).transpose(0, 3, 1, 2)
            return np.ascontiguousarray(out).reshape((B,) + self._out_shape)
        # grouped / depthwise: one batched GEMM over the groups
        c = cols.reshape(Bp, g, cg, Ho, Wo, kh, kw).transpose(0, 1, 2, 5, 6, 3, 4)
        c = c.reshape(Bp, g, cg * kh * kw, Ho * Wo)
        out = np.matmul(Wg[None], c)                                  # (B', g, C_out/g, HoWo)
        return out.reshape((B,) + self._out_shape)

    def _bias_shape(self):
        return (1, -1) + (1,) * (len(self.in_shape) - 2)

    def forward(self, X):
        return self._apply(X, self._Wg) + self.b.reshape(self._bias_shape())

    def abs_forward(self, X, bias=False):
        Y = self._apply(X, self._Wg_abs)
        return Y + np.abs(self.b).reshape(self._bias_shape()) if bias else Y

    def transpose(self, A):
        m = A.shape[0]
        N = self.in_shape[0]
        (sh, sw), (dh, dw), (pt, pl, pb, pr) = self._geom
        Ho, Wo = self._out2
        kh, kw = self._W2.shape[2:]
        g = self.groups
        C = self.in_shape[1]
        cg = C // g
        cog = self.W.shape[0] // g
        Hp, Wp = self._sp[0] + pt + pb, self._sp[1] + pl + pr
        Xp = np.zeros((m * N, C, Hp, Wp))
        if g == 1:
            a = A.reshape(m * N, cog, Ho, Wo).transpose(0, 2, 3, 1)    # (mN, Ho, Wo, C_out)
            cols = (a @ self._Wg[0]).reshape(m * N, Ho, Wo, cg, kh, kw).transpose(
                0, 3, 4, 5, 1, 2)                                      # (mN, C, kh, kw, Ho, Wo)
        else:
            a = A.reshape(m * N, g, cog, Ho * Wo)
            cols = np.matmul(self._Wg.transpose(0, 2, 1)[None], a)    # (mN, g, cg k k, HoWo)
            cols = cols.reshape(m * N, C, kh, kw, Ho, Wo)
        for i in range(kh):     # col2im: one strided scatter-add per kernel offset
            for j in range(kw):
                Xp[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh,
                   j * dw:j * dw + sw * (Wo - 1) + 1:sw] += cols[:, :, i, j]
        X = Xp[:, :, pt:pt + self._sp[0], pl:pl + self._sp[1]]
        return (np.ascontiguousarray(X).reshape((m,) + self.in_shape),)

    def bias_term(self, A):
        m = A.shape[0]
        Ar = A.reshape(m, self.in_shape[0], self.W.shape[0], -1)
        return Ar.sum(axis=(1, 3)) @ self.b

    def bias_tensor(self):
        return np.broadcast_to(self.b.reshape(self._bias_shape()[1:]),
                               self._out_shape).copy()

    def abs_bias(self):
        return np.abs(self.bias_tensor())


# ---- element-wise affine ----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Scale(LinearOp):
    """``y = x * s + t`` element-wise; ``s`` and ``t`` broadcast to ``shape`` (ONNX Add/Sub/Mul/
    Div/Neg by constants, BatchNormalization in inference form, input normalisation)."""

    s: np.ndarray
    t: np.ndarray
    shape: tuple

    def __post_init__(self):
        shp = tuple(int(v) for v in self.shape)
        s = np.asarray(self.s, dtype=np.float64)
        t = np.asarray(self.t, dtype=np.float64)
        if np.broadcast_shapes(s.shape, t.shape, shp) != shp:
            raise ValueError(f"Scale: constants {s.shape}, {t.shape} do not broadcast to {shp}")
        _frozen(self, "shape", shp)
        _frozen(self, "s", s)
        _frozen(self, "t", t)

    @property
    def in_shapes(self):
        return (self.shape,)

    @property
    def out_shape(self):
        return self.shape

    @property
    def n_params(self):
        return self.s.size + self.t.size

    def forward(self, X):
        return X * self.s + self.t

    def transpose(self, A):
        return (A * self.s,)

    def bias_term(self, A):
        t = np.broadcast_to(self.t, self.shape)
        return A.reshape(A.shape[0], -1) @ t.reshape(-1)

    def abs_forward(self, X, bias=False):
        Y = X * np.abs(self.s)
        return Y + np.abs(self.t) if bias else Y

    def bias_tensor(self):
        return np.broadcast_to(self.t, self.shape).copy()

    def abs_bias(self):
        return np.abs(self.bias_tensor())

    def to_csr(self):
        import scipy.sparse as sp
        d = np.broadcast_to(self.s, self.shape).reshape(-1)
        return [sp.diags(d, format="csr")], self.bias_tensor().reshape(-1)


@dataclass(frozen=True, eq=False)
class Sum(LinearOp):
    """``y = sum_i c_i x_i`` of tensors of one shape (residual Add / Sub)."""

    coefs: tuple
    shape: tuple

    def __post_init__(self):
        _frozen(self, "coefs", tuple(float(c) for c in self.coefs))
        _frozen(self, "shape", tuple(int(v) for v in self.shape))
        if len(self.coefs) < 2:
            raise ValueError("Sum needs at least two inputs")

    @property
    def in_shapes(self):
        return (self.shape,) * len(self.coefs)

    @property
    def out_shape(self):
        return self.shape

    @property
    def fan_in(self):
        return len(self.coefs)

    def forward(self, *X):
        y = self.coefs[0] * X[0]
        for c, x in zip(self.coefs[1:], X[1:]):
            y = y + c * x
        return y

    def transpose(self, A):
        return tuple(c * A for c in self.coefs)

    def abs_forward(self, *X, bias=False):
        y = abs(self.coefs[0]) * X[0]
        for c, x in zip(self.coefs[1:], X[1:]):
            y = y + abs(c) * x
        return y


# ---- shape ops --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Pad(LinearOp):
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
    def in_shapes(self):
        return (self.in_shape,)

    @property
    def out_shape(self):
        r = len(self.in_shape)
        return tuple(n + self.pads[a] + self.pads[r + a] for a, n in enumerate(self.in_shape))

    def _slices(self):
        r = len(self.in_shape)
        return (slice(None),) + tuple(slice(self.pads[a], self.pads[a] + n)
                                      for a, n in enumerate(self.in_shape))

    def forward(self, X):
        Y = np.zeros((X.shape[0],) + self.out_shape)
        Y[self._slices()] = X
        return Y

    def transpose(self, A):
        return (np.ascontiguousarray(A[self._slices()]),)

    def abs_forward(self, X, bias=False):
        return self.forward(X)


@dataclass(frozen=True, eq=False)
class Reshape(LinearOp):
    """C-order reshape (ONNX Reshape, Flatten, Squeeze, Unsqueeze)."""

    in_shape: tuple
    shape: tuple

    def __post_init__(self):
        _frozen(self, "in_shape", tuple(int(v) for v in self.in_shape))
        _frozen(self, "shape", tuple(int(v) for v in self.shape))
        if _size(self.in_shape) != _size(self.shape):
            raise ValueError(f"Reshape: {self.in_shape} -> {self.shape} changes the size")

    @property
    def in_shapes(self):
        return (self.in_shape,)

    @property
    def out_shape(self):
        return self.shape

    def forward(self, X):
        return X.reshape((X.shape[0],) + self.shape)

    def transpose(self, A):
        return (A.reshape((A.shape[0],) + self.in_shape),)

    def abs_forward(self, X, bias=False):
        return self.forward(X)


@dataclass(frozen=True, eq=False)
class Transpose(LinearOp):
    """Axis permutation (ONNX Transpose; ``perm`` over the op's axes)."""

    in_shape: tuple
    perm: tuple

    def __post_init__(self):
        _frozen(self, "in_shape", tuple(int(v) for v in self.in_shape))
        _frozen(self, "perm", tuple(int(p) for p in self.perm))
        if sorted(self.perm) != list(range(len(self.in_shape))):
            raise ValueError(f"Transpose: perm {self.perm} invalid for shape {self.in_shape}")

    @property
    def in_shapes(self):
        return (self.in_shape,)

    @property
    def out_shape(self):
        return tuple(self.in_shape[p] for p in self.perm)

    def forward(self, X):
        return np.ascontiguousarray(X.transpose((0,) + tuple(p + 1 for p in self.perm)))

    def transpose(self, A):
        inv = np.argsort(self.perm)
        return (np.ascontiguousarray(A.transpose((0,) + tuple(int(p) + 1 for p in inv))),)

    def abs_forward(self, X, bias=False):
        return self.forward(X)


@dataclass(frozen=True, eq=False)
class Concat(LinearOp):
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

    def abs_forward(self, *X, bias=False):
        return self.forward(*X)


@dataclass(frozen=True, eq=False)
class Slice(LinearOp):
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
    def in_shapes(self):
        return (self.in_shape,)

    @property
    def out_shape(self):
        return self._out

    def forward(self, X):
        return np.ascontiguousarray(X[self._sl])

    def transpose(self, A):
        Y = np.zeros((A.shape[0],) + self.in_shape)
        Y[self._sl] = A
        return (Y,)

    def abs_forward(self, X, bias=False):
        return self.forward(X)
