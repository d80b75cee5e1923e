"""Hostile input for the ONNX front end (hypothesis, seeded: the same examples every CI run).

Every model must import as a :class:`dpllnn.network.Network` with finite float64 weights that
computes what onnxruntime computes, or fail with a :class:`dpllnn.errors.DpllnnError` (exit code 2
with a one-line message) -- never another exception, a hang, or a silently different network.
``DPLLNN_FUZZ_EXAMPLES`` sets the examples per strategy (default 100), ``DPLLNN_FUZZ_RANDOM=1``
uses fresh random seeds.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from dpllnn.errors import DpllnnError
from dpllnn.io.onnx_export import to_onnx
from dpllnn.io.onnx_load import load_onnx
from dpllnn.io.onnx_import import network_from_model
from dpllnn.network import Affine, Network

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "dpllnn" / "examples" / "digits_mlp.onnx"
N_EX = int(os.environ.get("DPLLNN_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=N_EX, derandomize=not os.environ.get("DPLLNN_FUZZ_RANDOM"),
                deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])


def _small_model(gemm=True, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    net = Network([Affine(rng.normal(size=(4, 3)), rng.normal(size=4)),
                   Affine(rng.normal(size=(2, 4)), rng.normal(size=2))])
    return to_onnx(net, gemm=gemm, dtype=dtype)


SEED_MODELS = [_small_model(True), _small_model(False), _small_model(True, "float64", 1),
               onnx.load(str(EXAMPLE))]
SEED_BYTES = [m.SerializeToString() for m in SEED_MODELS]


def _ort_forward(model_bytes: bytes, X: np.ndarray, net: Network):
    """onnxruntime outputs for the rows of X, or None when onnxruntime rejects the model."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(model_bytes, sess_options=opts,
                                    providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        dtype = {"tensor(double)": np.float64, "tensor(float16)": np.float16}.get(inp.type,
                                                                                 np.float32)
        shape = [int(d) if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        ys = [np.asarray(sess.run(None, {inp.name: x.astype(dtype).reshape(shape)})[0],
                         dtype=np.float64).reshape(-1) for x in X]
    except Exception:          # onnxruntime's opinion only matters when it runs the model
        return None
    return np.array(ys)


def _import(model_or_bytes, tmp_path=None, compare=True):
    """Network or None (DpllnnError); any other exception fails the test."""
    if isinstance(model_or_bytes, bytes):
        p = tmp_path / "m.onnx"
        p.write_bytes(model_or_bytes)
        try:
            net = load_onnx(p)
        except DpllnnError as e:
            assert str(e) and "\n" not in str(e).strip(), repr(str(e))
            return None
        data = model_or_bytes
    else:
        try:
            net = network_from_model(model_or_bytes, "<fuzz>")
        except DpllnnError as e:
            assert str(e) and "\n" not in str(e).strip(), repr(str(e))
            return None
        data = model_or_bytes.SerializeToString()
    for a in net.affines:
        assert np.all(np.isfinite(a.W)) and np.all(np.isfinite(a.b)), "non-finite weights"
        assert a.W.dtype == np.float64
    for k in range(len(net.affines) - 1):
        assert net.affines[k].n_out == net.affines[k + 1].n_in
    if compare and net.n_inputs <= 4096:
        rng = np.random.default_rng(0)
        X = rng.uniform(-1, 1, (3, net.n_inputs))
        y64 = net.forward(X)
        scale = max(1.0, float(np.max(np.abs(y64))) if y64.size else 1.0)
        if scale < 1e6 and np.all(np.isfinite(y64)):
            yo = _ort_forward(data, X, net)
            if yo is not None and yo.shape == y64.shape and np.all(np.isfinite(yo)):
                assert np.allclose(y64, yo, rtol=1e-3, atol=1e-3 * scale), (y64, yo)
    return net


# ---- byte-level --------------------------------------------------------------------------------
@FUZZ
@given(data=st.binary(max_size=600))
def test_fuzz_random_bytes(tmp_path, data):
    _import(data, tmp_path)


@FUZZ
@given(st.sampled_from(range(len(SEED_BYTES))), st.lists(st.tuples(
    st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_mutated_bytes(tmp_path, which, edits):
    b = bytearray(SEED_BYTES[which])
    for kind, pos, val in edits:
        pos %= max(1, len(b))
        if kind == 0:
            b[pos] = val
        elif kind == 1:
            b[pos] ^= 1 << (val % 8)
        elif kind == 2:
            del b[pos:pos + 1 + val % 16]
        else:
            b[pos:pos] = bytes([val]) * (1 + val % 4)
    _import(bytes(b), tmp_path)


# ---- structure-level ---------------------------------------------------------------------------
OPS = ["Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Flatten", "Reshape", "Identity",
       "Conv", "Sigmoid", "MaxPool", "Transpose", "Concat", "Squeeze", "Unsqueeze", "Neg",
       "BatchNormalization", "Dropout", "Cast", "Softmax", "Tanh", "LeakyRelu", "Constant", ""]
WEIRD = [float("nan"), float("inf"), -float("inf"), 1e300, -1e300, 1e-300, 0.0, 1e38, 3e38]


@st.composite
def structural_mutation(draw):
    m = onnx.ModelProto()
    m.CopyFrom(SEED_MODELS[draw(st.integers(0, len(SEED_MODELS) - 1))])
    g = m.graph
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 13))
        if kind == 0 and g.initializer:                       # weird values in a weight
            t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
            a = numpy_helper.to_array(t).astype(np.float64).copy()
            if a.size:
                a.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from(WEIRD))
            dt = np.float64 if t.data_type == TensorProto.DOUBLE else np.float32
            with np.errstate(over="ignore"):
                t.CopyFrom(numpy_helper.from_array(a.astype(dt), t.name))
        elif kind == 1 and g.initializer:                     # wrong dims for the data
            t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
            t.dims[:] = draw(st.lists(st.integers(0, 9), max_size=3))
        elif kind == 2:                                       # input dims
            dims = g.input[0].type.tensor_type.shape.dim
            if dims:
                d = dims[draw(st.integers(0, len(dims) - 1))]
                v = draw(st.sampled_from([0, 1, 2, 7, 10 ** 9, -3, None]))
                if v is None:
                    d.dim_param = "N"
                else:
                    d.dim_value = v
        elif kind == 3 and g.node:                            # change an operator
            g.node[draw(st.integers(0, len(g.node) - 1))].op_type = draw(st.sampled_from(OPS))
        elif kind == 4 and g.node:                            # drop a node
            del g.node[draw(st.integers(0, len(g.node) - 1))]
        elif kind == 5 and g.node:                            # duplicate a node
            n = g.node[draw(st.integers(0, len(g.node) - 1))]
            g.node.append(n)
        elif kind == 6 and g.node:                            # dangling input
            n = g.node[draw(st.integers(0, len(g.node) - 1))]
            if n.input:
                n.input[draw(st.integers(0, len(n.input) - 1))] = draw(
                    st.sampled_from(["nope", "", g.output[0].name, g.input[0].name]))
        elif kind == 7 and g.node:                            # attributes
            n = g.node[draw(st.integers(0, len(g.node) - 1))]
            if n.attribute and draw(st.booleans()):
                del n.attribute[0]
            else:
                n.attribute.append(helper.make_attribute(
                    draw(st.sampled_from(["transA", "transB", "alpha", "beta", "axis", "perm"])),
                    draw(st.sampled_from([0, 1, 2, -1, 0.0, 2.5, float("nan"), [1, 0]]))))
        elif kind == 8:                                       # input element type
            g.input[0].type.tensor_type.elem_type = draw(st.sampled_from(
                [TensorProto.INT64, TensorProto.DOUBLE, TensorProto.FLOAT16, 0, 99]))
        elif kind == 9:                                       # extra output / input
            if draw(st.booleans()):
                g.output.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
            else:
                g.input.append(helper.make_tensor_value_info("extra_in", TensorProto.FLOAT,
                                                             [1, 3]))
        elif kind == 10 and g.node:                           # long Identity chain
            out = g.output[0].name
            prod = next((n for n in g.node if out in n.output), None)
            if prod is not None:
                k = draw(st.integers(1, 3000))
                prod.output[list(prod.output).index(out)] = "chain_0"
                for i in range(k):
                    g.node.append(helper.make_node("Identity", [f"chain_{i}"],
                                                   [f"chain_{i + 1}" if i + 1 < k else out]))
        elif kind == 11 and len(g.node) > 1:                  # cycle
            a, b = g.node[0], g.node[-1]
            if a.input and b.output:
                a.input[0] = b.output[0]
        elif kind == 12:                                      # shuffle node order
            nodes = list(g.node)
            perm = draw(st.permutations(range(len(nodes))))
            del g.node[:]
            g.node.extend([nodes[i] for i in perm])
        else:                                                 # opset / ir version
            m.ir_version = draw(st.sampled_from([0, 1, 3, 4, 8, 10, 99]))
            if m.opset_import:
                m.opset_import[0].version = draw(st.sampled_from([1, 6, 9, 11, 13, 21, 999]))
    return m


@FUZZ
@given(structural_mutation())
def test_fuzz_structural_mutations(model):
    _import(model)


# ---- random valid graphs: importer must agree with onnxruntime ---------------------------------
@st.composite
def random_graphs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n_in = draw(st.integers(1, 5))
    dtype, tp = draw(st.sampled_from([(np.float32, TensorProto.FLOAT),
                                      (np.float64, TensorProto.DOUBLE)]))
    nodes, inits = [], []
    cur, width, k = "x", n_in, 0

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    for _ in range(draw(st.integers(1, 6))):
        k += 1
        op = draw(st.sampled_from(["Gemm", "MatMulAdd", "Relu", "Mul", "Sub", "Div", "Neg",
                                   "Identity", "BN", "ReshapeFlatten"]))
        out = f"t{k}"
        if op == "Gemm":
            m = draw(st.integers(1, 6))
            trans = draw(st.booleans())
            W = rng.normal(size=(m, width) if trans else (width, m))
            alpha, beta = draw(st.sampled_from([1.0, 0.5, -2.0])), draw(st.sampled_from([1.0,
                                                                                       0.0, 3.0]))
            nodes.append(helper.make_node("Gemm", [cur, const(f"W{k}", W),
                                                   const(f"b{k}", rng.normal(size=m))], [out],
                                          transB=int(trans), alpha=alpha, beta=beta))
            width = m
        elif op == "MatMulAdd":
            m = draw(st.integers(1, 6))
            nodes.append(helper.make_node("MatMul", [cur, const(f"W{k}", rng.normal(
                size=(width, m)))], [out + "m"]))
            nodes.append(helper.make_node("Add", [const(f"b{k}", rng.normal(size=m)), out + "m"],
                                          [out]))
            width = m
        elif op in ("Mul", "Sub", "Div"):
            c = rng.uniform(0.5, 2.0, size=width if draw(st.booleans()) else 1)
            nodes.append(helper.make_node(op, [cur, const(f"c{k}", c)], [out]))
        elif op == "BN":
            nodes.append(helper.make_node(
                "BatchNormalization", [cur, const(f"s{k}", rng.uniform(0.5, 2, width)),
                                       const(f"bb{k}", rng.normal(size=width)),
                                       const(f"mu{k}", rng.normal(size=width)),
                                       const(f"v{k}", rng.uniform(0.5, 2, width))], [out],
                epsilon=1e-5))
        elif op == "ReshapeFlatten":
            shp = inits.append(numpy_helper.from_array(np.array([1, width], np.int64), f"r{k}"))
            del shp
            nodes.append(helper.make_node("Reshape", [cur, f"r{k}"], [out + "r"]))
            nodes.append(helper.make_node("Flatten", [out + "r"], [out], axis=1))
        else:
            nodes.append(helper.make_node(op, [cur], [out]))
        cur = out
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", tp, [1, n_in])],
                              [helper.make_tensor_value_info("y", tp, [1, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@FUZZ
@given(random_graphs())
def test_fuzz_random_graphs_agree_with_onnxruntime(model):
    net = _import(model)
    if net is None:
        return
    X = np.random.default_rng(1).uniform(-2, 2, (4, net.n_inputs))
    yo = _ort_forward(model.SerializeToString(), X, net)
    assert yo is not None, "a model the importer accepts must run in onnxruntime"
    y64 = net.forward(X)
    assert np.allclose(y64, yo, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(y64).max()))


# ---- specific edge cases -----------------------------------------------------------------------
def _with_weight(value):
    m = onnx.ModelProto()
    m.CopyFrom(SEED_MODELS[2])
    t = m.graph.initializer[0]
    a = numpy_helper.to_array(t).copy()
    a.reshape(-1)[0] = value
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    return m


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weight_is_an_error(value):
    with pytest.raises(DpllnnError):
        network_from_model(_with_weight(value), "<w>")


def test_huge_declared_input_is_an_error_not_a_crash():
    m = onnx.ModelProto()
    m.CopyFrom(SEED_MODELS[0])
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 10 ** 9
    with pytest.raises(DpllnnError):
        network_from_model(m, "<big>")


@pytest.mark.parametrize("kind", ["nan_weight", "garbage", "truncated", "huge_input"])
def test_cli_hostile_onnx_one_line_exit_2(tmp_path, kind):
    import subprocess
    p = tmp_path / f"{kind}.onnx"
    if kind == "nan_weight":
        onnx.save(_with_weight(float("nan")), str(p))
    elif kind == "garbage":
        p.write_bytes(os.urandom(200))
    elif kind == "truncated":
        p.write_bytes(SEED_BYTES[3][: len(SEED_BYTES[3]) // 2])
    else:
        m = onnx.ModelProto()
        m.CopyFrom(SEED_MODELS[0])
        m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 10 ** 9
        onnx.save(m, str(p))
    r = subprocess.run([sys.executable, "-m", "dpllnn.cli", "info", str(p)], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""
