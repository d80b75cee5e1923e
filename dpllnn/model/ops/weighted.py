"""Ops with weights: Dense, Conv (im2col GEMM), Scale, Sum."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .base import LinearOp, _frozen, _size

__all__ = ["Dense", "Conv", "Scale", "Sum", "conv_output_size"]


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
            # 2-D operands: a 4-D left operand makes matmul run one small GEMM per (B', Ho)
            # (measured 3.5x slower on sri_resnet_a's 128-channel 3x3 convs)
            c = cols.transpose(0, 2, 3, 1, 4, 5).reshape(Bp * Ho * Wo, cg * kh * kw)
            out = (c @ Wg[0].T).reshape(Bp, Ho, Wo, Wg.shape[1]).transpose(0, 3, 1, 2)
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
            # (mN Ho Wo, C_out) as one 2-D GEMM operand (see _apply)
            a = A.reshape(m * N, cog, Ho * Wo).transpose(0, 2, 1).reshape(-1, cog)
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

    def to_csr(self):
        """The conv's sparse matrix from im2col of the input's flat indices: one entry per
        (output, weight) pair that reads a real (not padded) input.  The generic transpose of
        identity rows took 2.9 s on verivital's 32x27x27 conv; this takes milliseconds."""
        import scipy.sparse as sp
        N, C = self.in_shape[0], self.in_shape[1]
        g = self.groups
        co = self.W.shape[0]
        cog, cg = co // g, C // g
        Ho, Wo = self._out2
        n_in = N * C * self._sp[0] * self._sp[1]
        # flat input index + 1 (the zero padding reads index 0: no entry)
        idx = self._cols(np.arange(1, n_in + 1, dtype=np.float64).reshape((N, C) + self._sp))
        K = cg * idx.shape[4] * idx.shape[5]
        ind = idx.reshape(N, g, cg, Ho, Wo, -1).transpose(0, 1, 3, 4, 2, 5).reshape(
            N, g, 1, Ho, Wo, K)
        val = self._Wg.reshape(1, g, cog, 1, 1, K)
        rows = np.arange(N * co * Ho * Wo).reshape(N, g, cog, Ho, Wo, 1)
        shape = (N, g, cog, Ho, Wo, K)
        ind, val, rows = (np.broadcast_to(a, shape).reshape(-1) for a in (ind, val, rows))
        keep = (ind > 0) & (val != 0.0)
        M = sp.csr_matrix((val[keep], (rows[keep], ind[keep].astype(np.int64) - 1)),
                          shape=(N * co * Ho * Wo, n_in))
        return [M], self.bias_tensor().reshape(-1)

    def bias_term(self, A):
        m = A.shape[0]
        Ar = A.reshape(m, self.in_shape[0], self.W.shape[0], -1)
        return Ar.sum(axis=(1, 3)) @ self.b

    def bias_tensor(self):
        return np.broadcast_to(self.b.reshape(self._bias_shape()[1:]),
                               self._out_shape).copy()


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
