"""The linear ops of the graph model (dpllnn.model.ops): adjoint identity, bias_term,
abs_forward, to_csr, and Conv against onnxruntime and a naive direct sum."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dpllnn.model.ops import (Concat, Conv, Dense, Pad, Reshape, Scale, Slice, Sum, Transpose,
                              conv_output_size)

M_ROWS = 3


# ---- random ops -------------------------------------------------------------------------------
def _rand_shape(rng, rank, lo=1, hi=4):
    return tuple(int(v) for v in rng.integers(lo, hi + 1, size=rank))


def make_conv(rng, nsp):
    g = int(rng.choice([1, 1, 2, 3]))
    cg, cog = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    N = int(rng.choice([1, 1, 2]))
    ks = tuple(int(v) for v in rng.integers(1, 4, size=nsp))
    st_ = tuple(int(v) for v in rng.integers(1, 4, size=nsp))
    dl = tuple(int(v) for v in rng.integers(1, 3, size=nsp))
    pads = tuple(int(v) for v in rng.integers(0, 3, size=2 * nsp))
    sp = tuple(int(dl[a] * (ks[a] - 1) + 1 + rng.integers(0, 5)) for a in range(nsp))
    W = rng.normal(size=(g * cog, cg) + ks)
    b = rng.normal(size=g * cog)
    return Conv(W, b, (N, g * cg) + sp, st_, dl, pads, g)


def make_dense(rng, rank):
    n_in, n_out = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    lead = _rand_shape(rng, rank - 1, 1, 3)
    return Dense(rng.normal(size=(n_out, n_in)), rng.normal(size=n_out), lead + (n_in,))


def _broadcastable(rng, shape):
    """A random shape broadcasting to ``shape`` (leading axes dropped, some axes 1)."""
    drop = int(rng.integers(0, len(shape) + 1))
    return tuple(1 if rng.random() < 0.4 else s for s in shape[drop:])


def make_scale(rng):
    shape = _rand_shape(rng, int(rng.integers(1, 5)))
    return Scale(rng.normal(size=_broadcastable(rng, shape)),
                 rng.normal(size=_broadcastable(rng, shape)), shape)


def make_sum(rng):
    shape = _rand_shape(rng, int(rng.integers(1, 4)))
    return Sum(tuple(rng.normal(size=int(rng.integers(2, 4)))), shape)


def make_pad(rng):
    shape = _rand_shape(rng, int(rng.integers(1, 5)))
    return Pad(shape, tuple(int(v) for v in rng.integers(0, 3, size=2 * len(shape))))


def make_reshape(rng):
    shape = _rand_shape(rng, int(rng.integers(1, 5)))
    n = int(np.prod(shape))
    divs = [d for d in range(1, n + 1) if n % d == 0]
    a = int(rng.choice(divs))
    target = [(n,), (1, n), (a, n // a), (n // a, 1, a)][int(rng.integers(0, 4))]
    return Reshape(shape, target)


def make_transpose(rng):
    shape = _rand_shape(rng, int(rng.integers(1, 5)))
    return Transpose(shape, tuple(int(p) for p in rng.permutation(len(shape))))


def make_concat(rng):
    r = int(rng.integers(1, 4))
    base = list(_rand_shape(rng, r))
    ax = int(rng.integers(0, r))
    shapes = []
    for _ in range(int(rng.integers(2, 4))):
        s = list(base)
        s[ax] = int(rng.integers(1, 4))
        shapes.append(tuple(s))
    axis = ax - r if rng.random() < 0.3 else ax
    return Concat(tuple(shapes), axis)


def make_slice(rng):
    shape = _rand_shape(rng, int(rng.integers(1, 5)), 1, 6)
    idx = []
    for n in shape:
        a = int(rng.integers(0, n))
        b = int(rng.integers(a + 1, n + 1))
        idx.append((a, b, int(rng.integers(1, 4))))
    return Slice(shape, tuple(idx))


MAKERS = {
    "conv1d": lambda r: make_conv(r, 1),
    "conv2d": lambda r: make_conv(r, 2),
    "dense1": lambda r: make_dense(r, 1),
    "dense2": lambda r: make_dense(r, 2),
    "dense3": lambda r: make_dense(r, 3),
    "scale": make_scale,
    "sum": make_sum,
    "pad": make_pad,
    "reshape": make_reshape,
    "transpose": make_transpose,
    "concat": make_concat,
    "slice": make_slice,
}
KINDS = sorted(MAKERS)


def _inputs(op, rng, batch=1, nonneg=False):
    X = [rng.normal(size=(batch,) + tuple(s)) for s in op.in_shapes]
    return [np.abs(x) for x in X] if nonneg else X


def _dot(A, Y):
    """Per-row <A[r], Y[0]>, and the per-row sum of |terms|."""
    m = A.shape[0]
    P = A.reshape(m, -1) * Y.reshape(1, -1)
    return P.sum(axis=1), np.abs(P).sum(axis=1)


def _close(a, b, scale, rel=1e-10):
    assert np.all(np.abs(a - b) <= rel * (scale + 1e-300)), (a, b, scale)


seeds = st.integers(0, 2 ** 32 - 1)


# ---- adjoint identity and bias_term -----------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=25, deadline=None)
@given(seed=seeds)
def test_adjoint_identity(kind, seed):
    rng = np.random.default_rng(seed)
    op = MAKERS[kind](rng)
    X = _inputs(op, rng)
    A = rng.normal(size=(M_ROWS,) + tuple(op.out_shape))
    Y = op.forward(*X)
    assert Y.shape == (1,) + tuple(op.out_shape)
    bias = op.bias_tensor()
    lhs, lmag = _dot(A, Y - bias)
    T = op.transpose(A)
    assert len(T) == op.n_inputs
    rhs, rmag = np.zeros(M_ROWS), np.zeros(M_ROWS)
    for t, x, s in zip(T, X, op.in_shapes):
        assert t.shape == (M_ROWS,) + tuple(s)
        v, mg = _dot(t, x)
        rhs += v
        rmag += mg
    _close(lhs, rhs, np.maximum(lmag, rmag) + np.abs(A).reshape(M_ROWS, -1) @ np.abs(
        bias).reshape(-1))
    # bias_term(A) == <A, op(0)>
    Z = op.forward(*[np.zeros((1,) + tuple(s)) for s in op.in_shapes])
    bt = op.bias_term(A)
    assert bt.shape == (M_ROWS,)
    ref, rmag0 = _dot(A, Z)
    _close(bt, ref, rmag0)
    np.testing.assert_array_equal(Z[0], bias)


# ---- abs_forward and to_csr -------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None)
@given(seed=seeds)
def test_abs_forward_and_csr(kind, seed):
    rng = np.random.default_rng(seed)
    op = MAKERS[kind](rng)
    mats, bias = op.to_csr()
    n_out = int(np.prod(op.out_shape))
    assert len(mats) == op.n_inputs and bias.shape == (n_out,)
    for M, s in zip(mats, op.in_shapes):
        assert M.shape == (n_out, int(np.prod(s)))
    B = 2
    # to_csr reproduces forward
    X = _inputs(op, rng, batch=B)
    Y = op.forward(*X).reshape(B, -1)
    ref = sum(np.asarray(M @ x.reshape(B, -1).T).T for M, x in zip(mats, X)) + bias
    mag = sum(np.asarray(abs(M) @ np.abs(x).reshape(B, -1).T).T for M, x in zip(mats, X)) \
        + np.abs(bias)
    _close(Y, ref, mag)
    # abs_forward on non-negative inputs is |M| x, plus |bias| when asked
    Xp = _inputs(op, rng, batch=B, nonneg=True)
    R = op.abs_forward(*Xp)
    assert R.shape == (B,) + tuple(op.out_shape)
    ref = sum(np.asarray(abs(M) @ x.reshape(B, -1).T).T for M, x in zip(mats, Xp))
    _close(R.reshape(B, -1), ref, ref)
    Rb = op.abs_forward(*Xp, bias=True)
    _close(Rb.reshape(B, -1), ref + np.abs(bias), ref + np.abs(bias))
    np.testing.assert_array_equal(op.abs_bias().reshape(-1), np.abs(bias))
    assert np.all(R >= 0)


def test_all_kinds_covered():
    """Every op class of dpllnn.model.ops has a random maker above."""
    import dpllnn.model.ops as ops
    have = {type(MAKERS[k](np.random.default_rng(0))).__name__ for k in KINDS}
    assert have == {n for n in ops.__all__ if isinstance(getattr(ops, n), type)
                    and n != "LinearOp"}


# ---- Conv against a naive direct sum and onnxruntime ------------------------------------------
def naive_conv(op: Conv, x):
    """Direct-sum convolution of one point ``x`` (in_shape) in Python loops (float64)."""
    W, b = op.W, op.b
    nsp = W.ndim - 2
    N, C = op.in_shape[:2]
    g = op.groups
    co, cg = W.shape[:2]
    cog = co // g
    out = np.zeros(op.out_shape)
    osp = out.shape[2:]
    ks = W.shape[2:]
    for n, o in itertools.product(range(N), range(co)):
        gi = o // cog
        for pos in itertools.product(*[range(s) for s in osp]):
            acc = b[o]
            for c in range(cg):
                for kk in itertools.product(*[range(k) for k in ks]):
                    idx = []
                    for a in range(nsp):
                        i = pos[a] * op.strides[a] + kk[a] * op.dilations[a] - op.pads[a]
                        idx.append(i)
                    if all(0 <= idx[a] < op.in_shape[2 + a] for a in range(nsp)):
                        acc += W[(o, c) + kk] * x[(n, gi * cg + c) + tuple(idx)]
            out[(n, o) + pos] = acc
    return out


@pytest.mark.parametrize("nsp", [1, 2])
@settings(max_examples=20, deadline=None)
@given(seed=seeds)
def test_conv_naive(nsp, seed):
    rng = np.random.default_rng(seed)
    op = make_conv(rng, nsp)
    for a in range(nsp):
        assert op.out_shape[2 + a] == conv_output_size(
            op.in_shape[2 + a], op.W.shape[2 + a], op.strides[a], op.dilations[a], op.pads[a],
            op.pads[nsp + a])
    x = rng.normal(size=op.in_shape)
    got = op.forward(x[None])[0]
    ref = naive_conv(op, x)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


CONV_CASES = [
    # (in_shape, W shape, strides, dilations, pads, groups)
    ((1, 2, 7, 6), (4, 2, 3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1),
    ((1, 4, 8, 9), (6, 2, 3, 2), (2, 3), (1, 2), (0, 2, 1, 0), 2),
    ((1, 3, 9, 9), (3, 1, 2, 3), (2, 1), (2, 1), (2, 0, 0, 1), 3),
    ((1, 2, 11), (3, 2, 3), (2,), (2,), (2, 1), 1),
    ((1, 4, 10), (4, 2, 2), (1,), (3,), (0, 3), 2),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_onnxruntime(case):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    in_shape, wshape, strides, dil, pads, groups = case
    rng = np.random.default_rng(hash(case) % 2 ** 32)
    W = rng.normal(size=wshape).astype(np.float32)
    b = rng.normal(size=wshape[0]).astype(np.float32)
    x = rng.normal(size=in_shape).astype(np.float32)
    op = Conv(W.astype(np.float64), b.astype(np.float64), in_shape, strides, dil, pads, groups)
    node = helper.make_node("Conv", ["x", "W", "b"], ["y"], kernel_shape=list(wshape[2:]),
                            strides=list(strides), dilations=list(dil), pads=list(pads),
                            group=groups)
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    ref = np.asarray(sess.run(None, {"x": x})[0], np.float64)
    got = op.forward(x.astype(np.float64)[None])[0]
    assert got.shape == ref.shape == op.out_shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, naive_conv(op, x.astype(np.float64)), rtol=1e-12,
                               atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, nsp=st.sampled_from([1, 2]))
def test_conv_csr_is_the_generic_csr(seed, nsp):
    """Conv's im2col to_csr gives the same matrix as the generic transpose of identity rows."""
    from dpllnn.model.ops.base import LinearOp

    op = make_conv(np.random.default_rng(seed), nsp)
    (M,), b = op.to_csr()
    (M0,), b0 = LinearOp.to_csr(op)
    assert M.shape == M0.shape
    assert abs(M - M0).max() <= 1e-12 * (1.0 + abs(M0).max())
    np.testing.assert_array_equal(b, b0)
